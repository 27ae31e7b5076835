"""Sample-rate conversion in numpy: a streaming, windowed-sinc polyphase resampler.

Output sample ``n`` sits at input position ``n * sr_in / sr_out``; it is the sum of the
``2 * half + 1`` input samples around that position weighted by a Kaiser-windowed sinc low-pass
whose cut-off is ``rolloff`` times the lower of the two Nyquist frequencies, so a tone above the
new Nyquist frequency is removed before it can alias. The fractional positions repeat with
period ``up = sr_out / gcd(sr_in, sr_out)``: the taps of each phase are computed once, and each
phase is normalised to unit gain at 0 Hz.

Two ways to apply them, same result:

* block matrix (the usual case, e.g. 44.1 / 48 / 22.05 / 8 kHz): ``Bo`` consecutive outputs
  (a multiple of ``up``) always read the same pattern of inputs, ``Bi = Bo * down / up`` further
  on, so all blocks are one matrix product ``frames (blocks, Lf) @ M (Lf, Bo)`` -- BLAS speed;
* gather (odd ratios such as 44101 Hz, whose ``up`` would make ``M`` huge): the inputs of every
  output are gathered and weighted by their phase's taps; positions are rounded to the nearest
  1 / ``MAX_PHASES`` sample, an error far below anything speech recognition can hear.

:class:`Resampler` takes the signal block by block (``push``) and keeps only the filter's
context between blocks, so its memory does not depend on the length of the recording;
``flush`` returns the last samples. :func:`resample` does a whole array.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

MAX_PHASES = 4096
MAX_MATRIX = 1 << 20  # entries of the block matrix M above which the gather path is used
_CHUNK = 8192  # outputs per numpy call on the gather path (bounds the gathered matrix)


def _positions(n: np.ndarray, up: int, down: int, phases: int) -> tuple[np.ndarray, np.ndarray]:
    """(j0, phase) of output samples ``n``: input position = j0 + phase / phases."""
    num = n * down
    if phases == up:
        return num // up, num % up
    pos = num / up
    j0 = np.floor(pos).astype(np.int64)
    ph = np.rint((pos - j0) * phases).astype(np.int64)
    wrap = ph == phases
    return j0 + wrap, np.where(wrap, 0, ph)


@dataclass(frozen=True)
class _Design:
    """The filter of one conversion: taps per phase and, where small enough, the block matrix (read-only)."""

    half: int
    phases: int
    taps: np.ndarray  # (phases, 2 * half + 1)
    matrix: np.ndarray | None  # (lf, bo), or None: the gather path
    bo: int = 0
    bi: int = 0
    lf: int = 0


@functools.lru_cache(maxsize=16)
def _design(up: int, down: int, zero_crossings: int, rolloff: float, beta: float) -> _Design:
    """Designed once per conversion and process: a runtime opens one Resampler per file."""
    cutoff = rolloff * min(1.0, up / down)  # fraction of the input Nyquist frequency
    half = int(math.ceil(zero_crossings / cutoff))
    phases = min(up, MAX_PHASES)
    frac = np.arange(phases, dtype=np.float64) / phases  # position - floor(position)
    k = np.arange(-half, half + 1, dtype=np.float64)
    tau = frac[:, None] - k[None, :]  # distance from the output position to input sample j0 + k
    u = np.clip(tau / (half + 1), -1.0, 1.0)
    taps = cutoff * np.sinc(cutoff * tau) * np.i0(beta * np.sqrt(1.0 - u * u)) / np.i0(beta)
    taps /= taps.sum(axis=1, keepdims=True)
    taps = taps.astype(np.float32)
    taps.flags.writeable = False
    if phases != up:
        return _Design(half, phases, taps, None)
    # block path: Bo consecutive outputs (a multiple of up, at least 32) read Lf inputs, Bi further on each block
    r = max(1, -(-32 // up))
    bo, bi = up * r, down * r
    j0, ph = _positions(np.arange(bo, dtype=np.int64), up, down, phases)
    lf = int(j0[-1]) + 2 * half + 1
    if lf * bo > MAX_MATRIX:
        return _Design(half, phases, taps, None)
    m = np.zeros((lf, bo), dtype=np.float32)
    rows = j0[:, None] + np.arange(2 * half + 1)[None, :]  # input index relative to block start - half
    m[rows, np.arange(bo)[:, None]] = taps[ph]
    m.flags.writeable = False
    return _Design(half, phases, taps, m, bo, bi, lf)


class Resampler:
    """Streaming resampler from ``sr_in`` to ``sr_out`` for one mono float signal."""

    def __init__(self, sr_in: int, sr_out: int = 16000, zero_crossings: int = 16, rolloff: float = 0.92,
                 beta: float = 8.6):
        if sr_in <= 0 or sr_out <= 0:
            raise ValueError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
        g = math.gcd(int(sr_in), int(sr_out))
        self.sr_in, self.sr_out = int(sr_in), int(sr_out)
        self.up, self.down = self.sr_out // g, self.sr_in // g
        self.identity = self.up == self.down
        # same rate: samples pass through, no filter is designed
        d = _design(self.up, self.down, int(zero_crossings), float(rolloff), float(beta)) if not self.identity \
            else _Design(0, 1, np.ones((1, 1), dtype=np.float32), None)
        self.half, self.phases, self.taps, self._matrix = d.half, d.phases, d.taps, d.matrix
        self._bo, self._bi, self._lf = d.bo, d.bi, d.lf
        self._offsets = np.arange(-self.half, self.half + 1)
        # signal state: buf holds input samples start .. start + len(buf) - 1 (zeros before 0)
        self._buf = np.zeros(self.half, dtype=np.float32)
        self._start = -self.half
        self._n_in = 0  # input samples received
        self._n_out = 0  # output samples produced

    def _positions(self, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _positions(n, self.up, self.down, self.phases)

    # ---------------------------------------------------------------- streaming
    def push(self, block: np.ndarray) -> np.ndarray:
        """Resample the next block of input; returns the output samples that are complete."""
        block = np.asarray(block, dtype=np.float32)
        if self.identity:
            return block
        self._buf = np.concatenate([self._buf, block])
        self._n_in += len(block)
        last = self._start + len(self._buf) - 1  # last input index available
        if self._matrix is not None:
            # blocks b whose inputs b * Bi - half .. b * Bi - half + Lf - 1 are all there
            nb = (last + self.half - self._lf + 1) // self._bi + 1 - self._n_out // self._bo
            return self._produce_blocks(max(0, nb) * self._bo + self._n_out)
        # outputs whose whole filter support (j0 + half) is available
        n_end = -(-((last - self.half + 1) * self.up) // self.down)
        return self._produce_gather(min(n_end, self.total_out(self._n_in)))

    def flush(self) -> np.ndarray:
        """The remaining output samples (the signal is taken as zero after its end)."""
        if self.identity:
            return np.zeros(0, dtype=np.float32)
        pad = self.half + 1 + (self._lf + self._bi if self._matrix is not None else 0)
        self._buf = np.concatenate([self._buf, np.zeros(pad, dtype=np.float32)])
        n_end = self.total_out(self._n_in)
        if self._matrix is not None:
            return self._produce_blocks(n_end)
        return self._produce_gather(n_end)

    def total_out(self, n_in: int) -> int:
        """Number of output samples for ``n_in`` input samples: ceil(n_in * sr_out / sr_in)."""
        return -(-(n_in * self.up) // self.down)

    def _drop_until(self, j: int) -> None:
        drop = max(0, min(j - self._start, len(self._buf)))
        if drop:
            self._buf = self._buf[drop:]
            self._start += drop

    def _produce_blocks(self, n_end: int) -> np.ndarray:
        b0 = self._n_out // self._bo  # _n_out is a multiple of Bo until the last call
        nb = -(-(n_end - self._n_out) // self._bo)
        if nb <= 0:
            return np.zeros(0, dtype=np.float32)
        first = b0 * self._bi - self.half - self._start  # buffer index of block b0's first input
        x = self._buf[first:]
        s = x.strides[0]
        frames = np.lib.stride_tricks.as_strided(x, shape=(nb, self._lf), strides=(s * self._bi, s),
                                                 writeable=False)
        out = (frames @ self._matrix).reshape(-1)[: n_end - self._n_out]
        self._n_out = n_end
        self._drop_until((b0 + nb) * self._bi - self.half)
        return out

    def _produce_gather(self, n_end: int) -> np.ndarray:
        out = np.empty(max(0, n_end - self._n_out), dtype=np.float32)
        for s in range(0, len(out), _CHUNK):
            n = np.arange(self._n_out + s, min(n_end, self._n_out + s + _CHUNK), dtype=np.int64)
            j0, ph = self._positions(n)
            idx = j0[:, None] + self._offsets[None, :] - self._start
            out[s : s + len(n)] = np.einsum("nk,nk->n", self._buf[idx], self.taps[ph])
        self._n_out = max(self._n_out, n_end)
        # keep only the context the next output needs
        self._drop_until(int(self._positions(np.array([self._n_out]))[0][0]) - self.half)
        return out


def resample(x: np.ndarray, sr_in: int, sr_out: int = 16000, **kwargs) -> np.ndarray:
    """Resample a whole 1-D signal (float32 out)."""
    r = Resampler(sr_in, sr_out, **kwargs)
    if r.identity:
        return np.asarray(x, dtype=np.float32)
    return np.concatenate([r.push(x), r.flush()])
