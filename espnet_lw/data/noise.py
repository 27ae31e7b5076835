"""Site-like noise for mini_synth's field splits and its noise bank (numpy only, seeded).

Four kinds, each returned at unit RMS so that the caller sets the SNR:

* ``pink``    - 1/f noise with a little white noise (fans, air conditioning, distant traffic);
* ``hum``     - mains hum: 50 or 60 Hz and its harmonics, slowly drifting, over a faint pink floor;
* ``machine`` - a motor: band-limited noise modulated at a few to a few tens of Hz, plus a whine
  (a tone between 150 and 900 Hz with its second harmonic);
* ``babble``  - several talkers at once: 4 to 7 segments of other synthetic speech summed at random
  gains (the sources are utterances of their own, never a split's sentences).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

KINDS = ("babble", "hum", "machine", "pink")


def _unit(x: np.ndarray) -> np.ndarray:
    x = x - x.mean()
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-12)


def pink(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """1/f ("pink") noise with 10 % of white noise mixed in."""
    white = rng.standard_normal(n)
    spec = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    spec /= np.sqrt(np.maximum(freqs, 60.0))
    spec[0] = 0.0
    return _unit(0.9 * _unit(np.fft.irfft(spec, n)) + 0.3 * _unit(white))


def hum(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """Mains hum: a 50 or 60 Hz fundamental, harmonics up to the 9th, a slow pitch drift."""
    t = np.arange(n) / sample_rate
    base = rng.choice([50.0, 60.0])
    drift = 0.3 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(base + drift) / sample_rate
    x = np.zeros(n)
    for k in range(1, 10):
        x += rng.uniform(0.2, 1.0) / k ** rng.uniform(0.5, 1.2) * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    return _unit(_unit(x) + 0.15 * pink(rng, n, sample_rate))


def machine(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """A motor: 200 Hz - 5 kHz noise, amplitude-modulated, plus a whine and its second harmonic."""
    t = np.arange(n) / sample_rate
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    lo, hi = rng.uniform(150, 400), rng.uniform(2500, 5000)
    spec *= 1.0 / (1.0 + (lo / np.maximum(freqs, 1.0)) ** 4) / (1.0 + (freqs / hi) ** 4)
    band = _unit(np.fft.irfft(spec, n))
    am = 1.0 + rng.uniform(0.3, 0.8) * np.sin(2 * np.pi * rng.uniform(4, 30) * t + rng.uniform(0, 2 * np.pi))
    f0 = rng.uniform(150, 900)
    whine = np.sin(2 * np.pi * f0 * t) + 0.4 * np.sin(4 * np.pi * f0 * t + rng.uniform(0, 2 * np.pi))
    return _unit(band * am + rng.uniform(0.2, 0.6) * _unit(whine))


def babble(rng: np.random.Generator, n: int, sources: Sequence[np.ndarray]) -> np.ndarray:
    """4-7 talkers: random segments of ``sources`` (speech, any level) summed at random gains."""
    if not sources:
        raise ValueError("babble needs speech sources")
    x = np.zeros(n)
    for _ in range(int(rng.integers(4, 8))):
        src = _unit(sources[int(rng.integers(len(sources)))])
        reps = int(np.ceil((n + len(src)) / len(src)))
        looped = np.tile(src, reps)
        start = int(rng.integers(len(src)))
        x += 10 ** (rng.uniform(-6, 0) / 20) * looped[start:start + n]
    return _unit(x)


def make(kind: str, rng: np.random.Generator, n: int, sample_rate: int,
         sources: Sequence[np.ndarray] = ()) -> np.ndarray:
    """``n`` samples of noise of ``kind`` (one of :data:`KINDS`) at unit RMS."""
    if kind == "pink":
        return pink(rng, n, sample_rate)
    if kind == "hum":
        return hum(rng, n, sample_rate)
    if kind == "machine":
        return machine(rng, n, sample_rate)
    if kind == "babble":
        return babble(rng, n, sources)
    raise ValueError(f"unknown noise kind '{kind}'; known: {', '.join(KINDS)}")
