"""Read audio for the runtime: any format soundfile reads, any sample rate and channel count,
any length, in bounded memory.

:func:`read_windows` opens a file, checks it, and yields the recording as mono 16 kHz float32
windows of at most ``max_seconds``: the file is read block by block (``SoundFile.read`` of a few seconds at a time),
mixed down to mono (the mean of the channels), resampled (:mod:`espnet_lw.runtime.resample`) and
cut at pauses by :class:`PauseCutter`, so memory stays the same however long the recording is.
A recording shorter than one window comes out whole, exactly as it is in the file.

Problems with a file are :class:`~espnet_lw.utils.cli.UserError` naming it: unreadable,
empty, or silent (peak amplitude below ``SILENCE_PEAK``). Silence is known only at the end of a
long file, so :func:`read_windows` raises it after the last window instead of yielding it; the
caller drops what it decoded of that file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import soundfile

from espnet_lw.runtime.resample import Resampler
from espnet_lw.utils.cli import UserError

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
SILENCE_PEAK = 1e-4  # float amplitude (1.0 = full scale); 16-bit audio below ~3 LSB is silent
MAX_WINDOW_SECONDS = 20.0
SEARCH_SECONDS = 4.0  # a cut goes to the quietest place of the last SEARCH_SECONDS of a window
BLOCK_SECONDS = 2.0


@dataclass
class AudioInfo:
    """What the file holds, as soundfile reports it."""

    path: str
    sample_rate: int
    channels: int
    frames: int  # in the file's own rate (approximate for some compressed formats)
    format: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


class PauseCutter:
    """Cut a stream of samples into windows of at most ``max_samples`` at the quietest point.

    ``push(samples)`` returns the windows that are complete; ``flush()`` the last one. Whenever
    the buffer reaches ``max_samples``, the cut goes to the centre of the frame (10 ms, energy
    averaged over ``smooth`` frames) with the lowest energy in the last ``search_samples`` of the
    window, i.e. into a pause between words when there is one. The buffer never holds more than
    ``max_samples`` plus one pushed block.
    """

    def __init__(self, max_samples: int, search_samples: int, frame: int = 160, smooth: int = 5):
        if not 0 < search_samples < max_samples:
            raise ValueError("need 0 < search_samples < max_samples")
        self.max_samples, self.search_samples = max_samples, search_samples
        self.frame, self.smooth = frame, smooth
        self._buf = np.zeros(0, dtype=np.float32)

    def cut_point(self, window: np.ndarray) -> int:
        """Index in ``window`` (length max_samples) where it is cut."""
        lo = len(window) - self.search_samples
        region = window[lo:]
        n = len(region) // self.frame
        energy = np.square(region[: n * self.frame].reshape(n, self.frame), dtype=np.float64).mean(axis=1)
        if self.smooth > 1 and n >= self.smooth:
            energy = np.convolve(energy, np.ones(self.smooth) / self.smooth, mode="same")
        # the latest of equally quiet frames keeps the windows long
        best = n - 1 - int(np.argmin(energy[::-1]))
        return lo + best * self.frame + self.frame // 2

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        self._buf = np.concatenate([self._buf, np.asarray(samples, dtype=np.float32)])
        out = []
        while len(self._buf) >= self.max_samples:
            cut = self.cut_point(self._buf[: self.max_samples])
            out.append(self._buf[:cut].copy())
            self._buf = self._buf[cut:]
        return out

    def flush(self) -> list[np.ndarray]:
        rest, self._buf = self._buf, np.zeros(0, dtype=np.float32)
        return [rest] if len(rest) else []


def open_audio(path: str) -> tuple[soundfile.SoundFile, AudioInfo]:
    """Open ``path`` with soundfile; anything it cannot read (or an empty file) is a UserError."""
    try:
        f = soundfile.SoundFile(path)
    except Exception as e:  # noqa: BLE001 - soundfile raises several types for bad files
        raise UserError(f"cannot read audio: {_reason(e)}", path) from e
    info = AudioInfo(str(path), int(f.samplerate), int(f.channels), int(f.frames), f.format)
    if info.frames <= 0 or info.channels <= 0:
        f.close()
        raise UserError("empty audio (no samples)", path)
    return f, info


def _reason(e: Exception) -> str:
    msg = " ".join(str(e).split()) or type(e).__name__
    return msg.replace("Error opening ", "").strip()


def read_windows(path: str, sample_rate: int = SAMPLE_RATE, max_seconds: float = MAX_WINDOW_SECONDS,
                 search_seconds: float = SEARCH_SECONDS, block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Yield mono float32 windows at ``sample_rate`` of the recording in ``path``.

    A note (logged once, INFO) says when the audio was resampled or mixed down.
    """
    f, info = open_audio(path)
    with f:
        changes = []
        if info.channels > 1:
            changes.append(f"{info.channels} channels mixed down to mono")
        if info.sample_rate != sample_rate:
            changes.append(f"resampled from {info.sample_rate} Hz to {sample_rate} Hz")
        if changes:
            logger.info("note: %s: %s", path, ", ".join(changes))
        resampler = Resampler(info.sample_rate, sample_rate)
        cutter = PauseCutter(int(max_seconds * sample_rate), int(search_seconds * sample_rate),
                             frame=max(1, sample_rate // 100))
        peak, n_read = 0.0, 0
        blocksize = max(1024, int(block_seconds * info.sample_rate))
        while True:
            try:  # plain sequential reads (SoundFile.blocks seeks around every block)
                block = f.read(blocksize, dtype="float32", always_2d=True)
            except Exception as e:  # noqa: BLE001 - a decoding error in the middle of the file
                raise UserError(f"cannot read audio after {n_read / info.sample_rate:.1f} s: {_reason(e)}",
                                path) from e
            if not len(block):
                break
            n_read += len(block)
            mono = block[:, 0] if info.channels == 1 else block.mean(axis=1, dtype=np.float32)
            if len(mono):
                peak = max(peak, float(np.abs(mono).max()))
            yield from cutter.push(resampler.push(mono))
        if n_read == 0:
            raise UserError("empty audio (no samples)", path)
        if peak < SILENCE_PEAK:
            raise UserError(f"silent audio (peak amplitude {peak:.2g} < {SILENCE_PEAK:g})", path)
        yield from cutter.push(resampler.flush())
        yield from cutter.flush()
