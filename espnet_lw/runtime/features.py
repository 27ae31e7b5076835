"""Log-mel filterbank features in numpy, matching ESPnet's ``DefaultFrontend``.

ESPnet's default ASR frontend (``espnet2/asr/frontend/default.py``) computes, for a float
waveform in [-1, 1] (what ``soundfile`` returns for 16-bit audio, ``int / 32768``):

1. ``Stft`` (``espnet2/layers/stft.py``): ``torch.stft`` with ``n_fft``, ``win_length``,
   ``hop_length``, ``center=True`` (reflect padding of ``n_fft // 2`` on both sides), a periodic
   Hann window of ``win_length`` zero-padded to ``n_fft`` in the middle, one-sided, not
   normalised; ``1 + len // hop_length`` frames;
2. the power spectrum ``re**2 + im**2``;
3. ``LogMel`` (``espnet2/layers/log_mel.py``): ``power @ librosa.filters.mel(...).T`` (Slaney
   mel scale and Slaney area normalisation unless ``htk``), clamped at 1e-10, natural log.

:class:`Fbank` does the same in float32 numpy. The mel matrix is computed here (the formulas of
``librosa.filters.mel``), so librosa is not needed at run time. Global MVN is not applied: it
is part of the exported network.

One shortcut: a frame is windowed over its ``win_length`` non-zero samples only and zero
padded at the end to ``n_fft`` before the FFT, where torch pads the window in the middle. The
two sequences differ by a circular shift, so their power spectra are identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CHUNK_FRAMES = 256  # frames per FFT call in Fbank.__call__

# --------------------------------------------------------------------------
# librosa's mel scale (librosa.core.convert.hz_to_mel / mel_to_hz, htk or Slaney)
# --------------------------------------------------------------------------
_F_SP = 200.0 / 3  # Slaney: linear part, Hz per mel
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(freqs, htk: bool = False) -> np.ndarray:
    f = np.asanyarray(freqs, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    mels = f / _F_SP
    log_t = f >= _MIN_LOG_HZ
    return np.where(log_t, _MIN_LOG_MEL + np.log(np.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP, mels)


def mel_to_hz(mels, htk: bool = False) -> np.ndarray:
    m = np.asanyarray(mels, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    freqs = _F_SP * m
    log_t = m >= _MIN_LOG_MEL
    return np.where(log_t, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL)), freqs)


def mel_filterbank(sr: int, n_fft: int, n_mels: int = 80, fmin: float = 0.0, fmax: float | None = None,
                   htk: bool = False) -> np.ndarray:
    """``librosa.filters.mel(sr=, n_fft=, n_mels=, fmin=, fmax=, htk=)`` (norm="slaney"): (n_mels, 1 + n_fft // 2)."""
    fmax = sr / 2.0 if fmax is None else float(fmax)
    fftfreqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin, htk), hz_to_mel(fmax, htk), n_mels + 2), htk)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    weights = np.zeros((n_mels, len(fftfreqs)), dtype=np.float32)  # librosa's default dtype
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, np.newaxis]
    return weights


def hann_window(n: int) -> np.ndarray:
    """Periodic Hann window, as ``torch.hann_window(n)`` (periodic=True)."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


# --------------------------------------------------------------------------
# The frontend
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class FbankConfig:
    """The ``frontend`` block of an exported model's meta.json (ESPnet DefaultFrontend settings)."""

    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float | None = None
    window: str = "hann"
    center: bool = True
    normalized: bool = False
    onesided: bool = True
    log_floor: float = 1e-10
    htk: bool = False

    @classmethod
    def from_meta(cls, frontend: dict, sample_rate: int) -> FbankConfig:
        """Read the meta.json ``frontend`` dict; settings this frontend cannot compute raise ValueError."""
        kind = frontend.get("type", "fbank")
        if kind != "fbank":
            raise ValueError(f"frontend type {kind!r} is not supported (only 'fbank')")
        mel = frontend.get("mel", "librosa-slaney")
        if mel not in ("librosa-slaney", "librosa-htk"):
            raise ValueError(f"mel filterbank {mel!r} is not supported (librosa-slaney or librosa-htk)")
        window = frontend.get("window", "hann")
        if window != "hann":
            raise ValueError(f"window {window!r} is not supported (only 'hann')")
        if not frontend.get("onesided", True):
            raise ValueError("a two-sided STFT is not supported")
        if frontend.get("pad_mode", "reflect") != "reflect":
            raise ValueError(f"pad_mode {frontend['pad_mode']!r} is not supported (only 'reflect', torch.stft's)")
        if frontend.get("fs") not in (None, sample_rate):
            raise ValueError(f"frontend fs {frontend['fs']} differs from the model's sample_rate {sample_rate}")
        n_fft = int(frontend.get("n_fft", 512))
        return cls(
            sample_rate=int(sample_rate),
            n_fft=n_fft,
            win_length=int(frontend.get("win_length") or n_fft),
            hop_length=int(frontend.get("hop_length", 128)),
            n_mels=int(frontend.get("n_mels", 80)),
            fmin=float(frontend.get("fmin") or 0.0),
            fmax=None if frontend.get("fmax") is None else float(frontend["fmax"]),
            window=window,
            center=bool(frontend.get("center", True)),
            normalized=bool(frontend.get("normalized", False)),
            onesided=True,
            log_floor=float(frontend.get("log_floor", 1e-10)),
            htk=mel == "librosa-htk",
        )


class Fbank:
    """``Fbank(config)(wave)`` -> float32 log-mel features (frames, n_mels) of one mono waveform."""

    def __init__(self, config: FbankConfig | None = None):
        self.config = c = config or FbankConfig()
        if c.win_length > c.n_fft:
            raise ValueError(f"win_length {c.win_length} > n_fft {c.n_fft}")
        window = hann_window(c.win_length)
        if c.normalized:  # torch.stft(normalized=True) scales the frame by n_fft ** -0.5
            window = window * np.float32(c.n_fft ** -0.5)
        self.window = window
        self.offset = (c.n_fft - c.win_length) // 2  # where torch puts the window inside the frame
        self.melmat = np.ascontiguousarray(
            mel_filterbank(c.sample_rate, c.n_fft, c.n_mels, c.fmin, c.fmax, c.htk).T)  # (F, n_mels)

    def num_frames(self, num_samples: int) -> int:
        c = self.config
        if c.center:
            return num_samples // c.hop_length + 1
        return max(0, (num_samples - c.n_fft) // c.hop_length + 1)

    def frames(self, wave: np.ndarray) -> np.ndarray:
        """The frames' ``win_length`` non-zero samples, (frames, win_length): a view, no copy of them."""
        c = self.config
        x = np.asarray(wave, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"expected a 1-D waveform, got shape {x.shape}")
        n = self.num_frames(len(x))
        if n <= 0:
            return np.zeros((0, c.win_length), dtype=np.float32)
        if c.center:
            pad = c.n_fft // 2
            # torch.stft pads in reflect mode; numpy's "reflect" is the same (edge not repeated)
            x = np.pad(x, (pad, pad), mode="reflect" if len(x) > 1 else "constant")
        return np.lib.stride_tricks.as_strided(
            x[self.offset :], shape=(n, c.win_length), strides=(x.strides[0] * c.hop_length, x.strides[0]),
            writeable=False)

    def _power(self, frames: np.ndarray) -> np.ndarray:
        spec = np.fft.rfft(frames * self.window, n=self.config.n_fft, axis=-1)
        return spec.real ** 2 + spec.imag ** 2

    def power(self, wave: np.ndarray) -> np.ndarray:
        """Power spectrum (frames, 1 + n_fft // 2), float32."""
        return self._power(self.frames(wave))

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        frames = self.frames(wave)
        out = np.empty((len(frames), self.config.n_mels), dtype=np.float32)
        # a few hundred frames at a time: the FFT's temporaries stay small however long the wave is
        for s in range(0, len(frames), CHUNK_FRAMES):
            np.matmul(self._power(frames[s : s + CHUNK_FRAMES]), self.melmat, out=out[s : s + CHUNK_FRAMES])
        np.maximum(out, np.float32(self.config.log_floor), out=out)
        return np.log(out, out=out)
