"""Cost of training, from ESPnet's ``train.log``, and the time-to-target arithmetic built on it.

Per epoch, ESPnet's ``<N>epoch results: [train] ... time=..., total_count=... [valid] ... cer_ctc=...,
time=...`` lines of each ``train.log`` give the wall time (train + validation), the cumulative number of
training iterations (``total_count``) and the validation CER of the CTC head (``cer_ctc``: greedy CTC on
the valid set, which is dev in these recipes; computed by the trainer at every epoch, so it costs no
decoding); optimizer updates of an epoch = its iterations // ``accum_grad`` (the trainer steps every
``accum_grad`` iterations).

Time to target (:func:`time_to_target`): the first epoch whose WER is <= the target, and the
cumulative cost (wall seconds, updates, training audio seconds) up to and including it, starting
from what the run paid before its first CTC epoch (an EncRL student's EncRL epochs, a KD or EncRL
student's share of the reference-target cache). The comparison that uses it is
:mod:`espnet_lw.benchmark.compare`.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

_UNITS = {
    "nanosecond": 1e-9, "microsecond": 1e-6, "millisecond": 1e-3, "second": 1.0, "minute": 60.0,
    "hour": 3600.0, "day": 86400.0, "week": 604800.0, "year": 31536000.0,
}
_SPAN_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(nanosecond|microsecond|millisecond|second|minute|hour|day|week|year)s?\b")
_EPOCH_LINE = re.compile(r"\b(\d+)epoch results: (.*)$")
# "time=" not preceded by a word character (so not "train_time=" / "iter_time="), up to the next ", key=" / "["
_TIME_FIELD = re.compile(r"(?<![\w.])time=(.*?)(?=, [A-Za-z_][\w]*=|,? \[|,?\s*$)")
_COUNT_FIELD = re.compile(r"(?<![\w.])total_count=(\d+)")
_CER_CTC_FIELD = re.compile(r"(?<![\w.])cer_ctc=([0-9.eE+-]+|nan)")


def parse_timespan(text: str) -> float:
    """Seconds of a humanfriendly timespan as ESPnet's reporter prints it.

    ``"5 minutes and 30.52 seconds"`` -> 330.52; ``"1 hour, 2 minutes and 3 seconds"`` -> 3723;
    a plain number is taken as seconds. Raises ``ValueError`` when nothing parses.
    """
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _SPAN_PART.findall(text)
    if not parts:
        raise ValueError(f"not a timespan: {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


@dataclass(frozen=True)
class EpochTime:
    """Wall time of one epoch: training and validation, in seconds; ``count``: the training iterations
    counted so far (ESPnet's cumulative ``total_count`` of ``[train]``), ``None`` when not logged;
    ``valid_cer``: the validation CER of the CTC head in percent (``[valid] cer_ctc``), ``None`` when not
    logged (an EncRL step has no CTC validation) or ``nan``."""

    train: float
    valid: float
    count: Optional[int] = None
    valid_cer: Optional[float] = None

    @property
    def total(self) -> float:
        return self.train + self.valid


def parse_epoch_times(log: Path | str) -> Dict[int, EpochTime]:
    """``{epoch: EpochTime}`` from the ``<N>epoch results:`` lines of an ESPnet ``train.log``.

    A log that was appended to by a resumed run may report an epoch twice: the last line wins.
    A missing file gives ``{}``.
    """
    log = Path(log)
    out: Dict[int, EpochTime] = {}
    if not log.is_file():
        return out
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _EPOCH_LINE.search(line)
        if not m:
            continue
        body = m.group(2)
        train_part, _, valid_part = body.partition("[valid]")
        secs = []
        for part in (train_part, valid_part):
            t = _TIME_FIELD.search(part)
            secs.append(parse_timespan(t.group(1)) if t else 0.0)
        if _TIME_FIELD.search(train_part) is None:
            logging.warning("%s: epoch %s has no train time: %s", log, m.group(1), line[:200])
        count = _COUNT_FIELD.search(train_part)
        out[int(m.group(1))] = EpochTime(secs[0], secs[1], int(count.group(1)) if count else None,
                                         _percent(_CER_CTC_FIELD.search(valid_part)))
    return dict(sorted(out.items()))


def _percent(match: Optional[re.Match]) -> Optional[float]:
    """A logged fraction (``0.264``) as a percentage rounded to 3 decimals; ``None`` for no match / nan."""
    if match is None:
        return None
    value = float(match.group(1))
    return None if math.isnan(value) else round(100.0 * value, 3)


def train_seconds(log: Path | str) -> Optional[float]:
    """A training's wall time: its epochs' train + valid seconds summed (a resumed training counted in
    full); ``None`` when the log has no finished epoch (or does not exist)."""
    times = parse_epoch_times(log)
    return sum(t.total for t in times.values()) if times else None


def seconds_list(times: Dict[int, EpochTime]) -> List[float]:
    """Seconds per epoch 1..max (an epoch missing from the log counts 0)."""
    if not times:
        return []
    return [round(times[e].total, 3) if e in times else 0.0 for e in range(1, max(times) + 1)]


def valid_cer_list(times: Dict[int, EpochTime]) -> List[Optional[float]]:
    """Validation CER (%) per epoch 1..max; ``None`` where the epoch is missing or logged none."""
    if not times:
        return []
    return [times[e].valid_cer if e in times else None for e in range(1, max(times) + 1)]


def updates_list(times: Dict[int, EpochTime], accum_grad: int = 1) -> List[Optional[int]]:
    """Optimizer updates per epoch 1..max: (``count`` of the epoch - ``count`` of the one before) //
    ``accum_grad``; ``None`` where a count is missing (epoch 1 counts from 0)."""
    if not times:
        return []
    out: List[Optional[int]] = []
    for e in range(1, max(times) + 1):
        cur = times[e].count if e in times else None
        prev = 0 if e == 1 else (times[e - 1].count if e - 1 in times else None)
        out.append(None if cur is None or prev is None or cur < prev else (cur - prev) // max(accum_grad, 1))
    return out


def epoch_summary_lines(log: Path | str) -> List[str]:
    """The ``<N>epoch results:`` lines of a ``train.log`` (what the benchmark's logs keep)."""
    log = Path(log)
    if not log.is_file():
        return []
    return [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines()
            if _EPOCH_LINE.search(line)]


# ---------------------------------------------------------------------------------- time to target
def time_to_reach(wers: Sequence[Optional[float]], seconds: Sequence[float], target: float,
                  offset: float = 0.0) -> Tuple[Optional[int], Optional[float]]:
    """First epoch (1-based) whose WER is <= ``target`` and the wall time then (``offset`` + the
    summed epoch times up to it); ``(None, None)`` if never reached. ``None`` WERs are skipped."""
    cum = float(offset)
    for i, (w, s) in enumerate(zip(wers, seconds), 1):
        cum += float(s)
        if w is not None and w <= target + 1e-9:
            return i, cum
    return None, None


def first_crossing(wers: Sequence[Optional[float]], target: Optional[float]) -> Optional[int]:
    """The first epoch (1-based) whose WER is <= ``target`` (``None`` WERs skipped); ``None``: never."""
    if target is None:
        return None
    for i, w in enumerate(wers, 1):
        if w is not None and w <= target + 1e-9:
            return i
    return None


def cumulative(per_epoch: Sequence[Optional[float]], offset: Optional[float] = 0.0) -> List[Optional[float]]:
    """Running sums of ``per_epoch`` starting at ``offset``; ``None`` from the first unknown value on."""
    out: List[Optional[float]] = []
    cum = offset
    for v in per_epoch:
        cum = None if cum is None or v is None else cum + float(v)
        out.append(cum)
    return out


def mean_curve(curves: Sequence[Sequence[Optional[float]]]) -> List[Optional[float]]:
    """Epoch-wise mean of several runs' curves (the longest run's length); ``None`` at an epoch where a
    run has no value (a run that stopped early, an epoch not decoded)."""
    if not curves:
        return []
    out: List[Optional[float]] = []
    for e in range(max(len(c) for c in curves)):
        vals = [c[e] if e < len(c) else None for c in curves]
        out.append(None if any(v is None for v in vals) else sum(vals) / len(vals))
    return out


def last_value(curve: Sequence[Optional[float]]) -> Tuple[Optional[int], Optional[float]]:
    """``(epoch, value)`` of the last epoch of ``curve``; ``(None, None)`` if that epoch has no value
    (an undecoded last epoch must not silently move the target to an earlier one)."""
    if not curve or curve[-1] is None:
        return None, None
    return len(curve), curve[-1]


def time_to_target(wers: Sequence[Optional[float]], costs: Dict[str, Sequence[Optional[float]]],
                   target: Optional[float]) -> dict:
    """The first epoch whose WER <= ``target`` and each cumulative cost at it.

    ``costs``: ``{"wall_seconds": [...], "updates": [...], ...}``, cumulative per epoch (as
    :func:`cumulative` gives, the cost paid before epoch 1 included). Returns ``{"reached", "epoch",
    <cost name>: value or None}``.
    """
    epoch = first_crossing(wers, target)
    out = {"reached": epoch is not None, "epoch": epoch}
    for name, cum in costs.items():
        out[name] = None if epoch is None or epoch > len(cum) or cum[epoch - 1] is None else round(cum[epoch - 1], 3)
    return out


def speedup(baseline: Optional[float], cost: Optional[float]) -> Optional[float]:
    """``baseline / cost`` rounded to 3 decimals; ``None`` when either is missing or ``cost`` <= 0."""
    if baseline is None or cost is None or cost <= 0:
        return None
    return round(baseline / cost, 3)


def ratio_key(ratio: float) -> str:
    """``0.6666`` -> ``"0.667"``, ``0.5`` -> ``"0.5"``."""
    return f"{round(ratio, 3):g}"
