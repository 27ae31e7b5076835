"""Audio input for stage 3: read a ``wav.scp`` value into float samples, resample, quantise.

* :func:`load_source` - a file path (anything libsndfile reads: WAV, FLAC, NIST SPHERE with PCM
  samples, ...), a Kaldi archive entry ``ark:offset``, or a shell pipe ``cmd |`` whose stdout is
  WAV (run with bash ``pipefail``); every problem is a :class:`~espnet_lw.utils.cli.UserError`
  naming what was read and the source;
* :func:`resample` - torchaudio's sinc resampler when available, else an FFT resampler in numpy;
* :func:`to_int16` - float samples to 16-bit PCM with rounding and clipping.
"""

from __future__ import annotations

import io
import os
import re
import struct
import subprocess
from typing import Optional, Tuple

import numpy as np

from espnet_lw.utils.cli import UserError


# ---------------------------------------------------------------------------
# audio input
# ---------------------------------------------------------------------------
def _parse_wav_bytes(buf: bytes) -> Tuple[np.ndarray, int]:
    """Minimal RIFF/WAVE parser for streamed WAV whose header sizes are bogus.

    Used only when libsndfile refuses a pipe's output.  Supports integer PCM
    (8/16/24/32 bit) and 32/64-bit float.  Returns ``(float32 [n, ch], rate)``.
    """
    if len(buf) < 12 or buf[:4] not in (b"RIFF", b"RIFX") or buf[8:12] != b"WAVE":
        raise ValueError("output is not a WAV stream (no RIFF/WAVE header)")
    pos, fmt = 12, None
    while pos + 8 <= len(buf):
        cid, size = buf[pos:pos + 4], struct.unpack("<I", buf[pos + 4:pos + 8])[0]
        body = pos + 8
        if cid == b"fmt ":
            tag, ch, rate, _, _, bits = struct.unpack("<HHIIHH", buf[body:body + 16])
            if tag == 0xFFFE and size >= 40:
                tag = struct.unpack("<H", buf[body + 24:body + 26])[0]
            fmt = (tag, ch, rate, bits)
        elif cid == b"data":
            if fmt is None:
                raise ValueError("WAV data chunk before fmt chunk")
            tag, ch, rate, bits = fmt
            data = buf[body:] if size == 0 or body + size > len(buf) else buf[body:body + size]
            width = bits // 8
            if ch < 1 or width < 1:
                raise ValueError("bad WAV fmt chunk")
            data = data[: len(data) // (width * ch) * width * ch]
            if tag == 3 and bits in (32, 64):
                x = np.frombuffer(data, "<f4" if bits == 32 else "<f8").astype(np.float32)
            elif tag == 1 and bits == 8:
                x = (np.frombuffer(data, np.uint8).astype(np.float32) - 128) / 128
            elif tag == 1 and bits == 16:
                x = np.frombuffer(data, "<i2").astype(np.float32) / 32768
            elif tag == 1 and bits == 24:
                b = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
                v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
                x = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / (1 << 23)
            elif tag == 1 and bits == 32:
                x = np.frombuffer(data, "<i4").astype(np.float32) / 2**31
            else:
                raise ValueError(f"unsupported WAV encoding (format tag {tag}, {bits} bits)")
            return x.reshape(-1, ch), rate
        pos = body + size + (size & 1)
    raise ValueError("no data chunk in WAV stream")


def wav_truncation(path: str) -> Optional[Tuple[int, int, int]]:
    """``(declared samples, samples held, rate)`` when ``path`` is a RIFF/WAVE file whose data chunk is
    shorter than its header says; ``None`` otherwise (not a WAV file, whole, or a streamed header
    whose data size is unknown: 0 or 0xFFFFFFFF). libsndfile reads such a file without complaint."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            pos, block, rate = 12, 0, 0
            while pos + 8 <= size:
                f.seek(pos)
                cid, csize = f.read(4), struct.unpack("<I", f.read(4))[0]
                if cid == b"fmt ":
                    fmt = f.read(16)
                    if len(fmt) == 16:
                        _, _, rate, _, block, _ = struct.unpack("<HHIIHH", fmt)
                elif cid == b"data":
                    if csize in (0, 0xFFFFFFFF) or block <= 0 or rate <= 0:
                        return None
                    held = size - (pos + 8)
                    return (csize // block, max(0, held) // block, rate) if held < csize else None
                pos += 8 + csize + (csize & 1)
    except (OSError, struct.error):
        return None
    return None


def _read_bytes_audio(buf: bytes) -> Tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        x, sr = sf.read(io.BytesIO(buf), dtype="float32", always_2d=True)
        return x, sr
    except Exception:  # libsndfile is strict about streamed headers
        return _parse_wav_bytes(buf)


def load_source(source: str, desc: str) -> Tuple[np.ndarray, int]:
    """Read one ``wav.scp`` value; return ``(float32 [samples, channels], rate)``.

    ``desc`` names what is being read (e.g. ``utterance 'a1'``) for error
    messages; raises :class:`UserError` naming it and the source.
    """
    import soundfile as sf

    source = source.strip()
    if source.endswith("|"):
        cmd = source[:-1].rstrip()
        try:
            proc = subprocess.run(
                ["bash", "-c", "set -o pipefail; " + cmd],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            )
        except OSError as e:
            raise UserError(f"{desc}: cannot run pipe command: {e}", cmd) from None
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise UserError(
                f"{desc}: pipe command failed with exit status {proc.returncode}"
                + (f": {err[-1]}" if err else ""),
                cmd,
                "run the command by hand from the recipe directory and fix it (or the file it reads)",
            )
        if not proc.stdout:
            raise UserError(f"{desc}: pipe command produced no output", cmd)
        try:
            return _read_bytes_audio(proc.stdout)
        except Exception as e:
            raise UserError(f"{desc}: pipe output is not readable audio ({e})", cmd,
                            "the command must write WAV to stdout (e.g. '... -t wav - |')") from None
    if not os.path.isfile(source):
        m = re.match(r"^(.+):(\d+)$", source)
        if m and os.path.isfile(m.group(1)):
            try:
                import kaldiio

                rate, x = kaldiio.load_mat(source)
                x = np.asarray(x)
                x = x.astype(np.float32) / 32768 if x.dtype.kind == "i" else x.astype(np.float32)
                return (x[:, None] if x.ndim == 1 else x), int(rate)
            except Exception as e:
                raise UserError(f"{desc}: cannot read Kaldi archive entry ({e})", source) from None
        raise UserError(
            f"{desc}: audio file not found (cwd: {os.getcwd()})",
            source,
            "fix the path in wav.scp (relative paths are relative to the directory you run from)",
        )
    truncated = wav_truncation(source)
    if truncated is not None:
        declared, held, rate = truncated
        raise UserError(
            f"{desc}: truncated WAV file: its header declares {declared} samples ({declared / rate:.2f}s) "
            f"but the file holds {held} ({held / rate:.2f}s)",
            source,
            "the file was cut short (an interrupted copy, download or conversion): copy or convert it again; "
            "to use what is left, rewrite it (sox IN OUT) so that its header matches",
        )
    try:
        x, sr = sf.read(source, dtype="float32", always_2d=True)
    except Exception as e:
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise UserError(
            f"{desc}: cannot read audio ({msg})",
            source,
            "the file is corrupt or in a format libsndfile cannot read; convert it with sox/ffmpeg, or for "
            "shorten-compressed SPHERE put 'sph2pipe -f wav FILE |' in wav.scp",
        ) from None
    return x, sr


# ---------------------------------------------------------------------------
# resampling
# ---------------------------------------------------------------------------
def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample ``x`` (float32 ``[n, ch]``) from ``sr_in`` to ``sr_out`` Hz."""
    if sr_in == sr_out:
        return x
    try:
        import torch
        import torchaudio.functional as AF

        torch.set_num_threads(1)
        y = AF.resample(torch.from_numpy(np.ascontiguousarray(x.T)), sr_in, sr_out)
        return y.numpy().T.astype(np.float32, copy=False)
    except ImportError:
        pass
    # Band-limited FFT resampling: keep the common low-frequency bins.
    n_in = x.shape[0]
    n_out = max(1, int(round(n_in * sr_out / sr_in)))
    spec = np.fft.rfft(x, axis=0)
    out = np.zeros((n_out // 2 + 1, x.shape[1]), dtype=spec.dtype)
    m = min(spec.shape[0], out.shape[0])
    out[:m] = spec[:m]
    return (np.fft.irfft(out, n=n_out, axis=0) * (n_out / n_in)).astype(np.float32)


def to_int16(x: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1) to int16 with rounding and clipping (exact for 16-bit sources)."""
    return np.clip(np.rint(x * 32768.0), -32768, 32767).astype(np.int16)
