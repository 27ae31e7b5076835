"""Wall time of training, from ESPnet's ``train.log``, and the speed-ups built on it.

Per epoch: ESPnet's ``<N>epoch results: [train] ... time=... [valid] ... time=...`` lines of
each ``train.log`` (train + validation).

Speed-up of one ratio (key: the ratio of removed blocks, e.g. ``"0.667"``): target = the WER
(first ``--epoch_test_sets`` set) of the scratch student at its last epoch; ``t_scratch`` = the
scratch student's summed epoch times; ``e`` = the first fine-tune epoch of the EncRL student
(loss clip+mse) whose WER is <= target, ``t_ft(e)`` its summed fine-tune epoch times up to ``e``:

* ``speedup_to_target_finetune_only`` = t_scratch / t_ft(e)  (the paper's count);
* ``speedup_to_target`` = t_scratch / (t_encrl + t_cache + t_ft(e))  (what a user pays);
* ``speedup_to_target_amortised`` = t_scratch / (t_encrl + t_cache / n_encrl + t_ft(e));

``null`` when the EncRL student never reaches the target (or a curve is missing).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from espnet_lw.benchmark.systems import System

_UNITS = {
    "nanosecond": 1e-9, "microsecond": 1e-6, "millisecond": 1e-3, "second": 1.0, "minute": 60.0,
    "hour": 3600.0, "day": 86400.0, "week": 604800.0, "year": 31536000.0,
}
_SPAN_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(nanosecond|microsecond|millisecond|second|minute|hour|day|week|year)s?\b")
_EPOCH_LINE = re.compile(r"\b(\d+)epoch results: (.*)$")
# "time=" not preceded by a word character (so not "train_time=" / "iter_time="), up to the next ", key=" / "["
_TIME_FIELD = re.compile(r"(?<![\w.])time=(.*?)(?=, [A-Za-z_][\w]*=|,? \[|,?\s*$)")


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
    """Wall time of one epoch: training and validation, in seconds."""

    train: float
    valid: float

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
        out[int(m.group(1))] = EpochTime(secs[0], secs[1])
    return dict(sorted(out.items()))


def seconds_list(times: Dict[int, EpochTime]) -> List[float]:
    """Seconds per epoch 1..max (an epoch missing from the log counts 0)."""
    if not times:
        return []
    return [round(times[e].total, 3) if e in times else 0.0 for e in range(1, max(times) + 1)]


# ---------------------------------------------------------------------------------- speed-up
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


def speedup(baseline_seconds: Optional[float], seconds: Optional[float]) -> Optional[float]:
    """``baseline_seconds / seconds`` rounded to 3 decimals; ``None`` when either is missing."""
    if baseline_seconds is None or seconds is None or seconds <= 0:
        return None
    return round(baseline_seconds / seconds, 3)


def compute_speedups(scratch: Union[System, Mapping], encrl: Union[System, Mapping], cache_seconds: float,
                     n_encrl: int, speed_set: str) -> dict:
    """The three speed-ups of one ratio (see the module doc) and what they were computed from.

    ``scratch`` / ``encrl``: :class:`System` records (or systems of benchmark.json, as dicts).
    """
    if isinstance(scratch, Mapping):
        scratch = System.from_dict(scratch)
    if isinstance(encrl, Mapping):
        encrl = System.from_dict(encrl)
    s_wers = scratch.wer_curve(speed_set)
    e_wers = encrl.wer_curve(speed_set)
    t_scratch = round(sum(scratch.seconds_per_epoch or []), 3)
    t_encrl = float(encrl.encrl_seconds or 0.0)
    target = s_wers[-1] if s_wers else None
    details = {
        "scratch_system": scratch.name, "encrl_system": encrl.name, "test_set": speed_set,
        "target_wer": target, "scratch_seconds": t_scratch, "encrl_seconds": t_encrl,
        "reference_cache_seconds": cache_seconds, "n_encrl_students": n_encrl,
        "reached_epoch": None, "finetune_seconds_to_target": None,
    }
    out = {"full": None, "finetune_only": None, "amortised": None, "details": details}
    if target is None or not e_wers:
        return out
    epoch, t_ft = time_to_reach(e_wers, encrl.seconds_per_epoch or [], target)
    if epoch is None:
        return out
    details.update(reached_epoch=epoch, finetune_seconds_to_target=round(t_ft, 3))
    out["finetune_only"] = speedup(t_scratch, t_ft)
    out["full"] = speedup(t_scratch, t_encrl + cache_seconds + t_ft)
    out["amortised"] = speedup(t_scratch, t_encrl + cache_seconds / max(n_encrl, 1) + t_ft)
    return out


def ratio_key(ratio: float) -> str:
    """``0.6666`` -> ``"0.667"``, ``0.5`` -> ``"0.5"``."""
    return f"{round(ratio, 3):g}"
