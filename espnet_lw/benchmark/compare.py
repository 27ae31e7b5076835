"""The comparison at each ratio: seeds grouped into systems, the dev target, costs to it, statistics.

Per ratio (key ``"0.667"``: the fraction of the reference's blocks removed):

* **systems**: the runs of one system (its seeds) form a group (:attr:`System.group`); its final WER
  per set is given as mean, standard deviation (ddof 1; ``None`` for one run), min, max and n;
* **target**: the WER of the scratch system at its last epoch on the target set (``dev``): with
  several scratch seeds, the mean over the seeds of their last-epoch WERs (the last epoch of the
  mean curve). ``test`` is never used for it. The target "set" may also be
  :data:`~espnet_lw.benchmark.systems.VALID_CER`, the trainer's validation CER on dev at every epoch
  (no per-epoch decoding needed): the same arithmetic on that curve;
* **cost to target** of each system: the first epoch at which its *mean* (over its seeds) per-epoch
  curve is <= the target, and the mean over its seeds of the cumulative cost up to that epoch, in
  wall seconds (train + validation), optimizer updates and training audio seconds, everything the run
  paid included: the share of the reference-target cache (KD and EncRL runs: cache wall time / the
  number of runs that read it; audio: one pass over the training set, shared the same way; no
  updates), all EncRL epochs, then the CTC epochs up to the crossing. Each seed's own crossing is
  listed too (``per_seed``). ``finetune_only_wall_seconds``: the CTC epochs alone (the paper's count);
* **speed-ups**: scratch's cost / the system's cost, per measure; for non-baselines also against the
  fastest baseline (per measure, the baseline with the lowest cost that reaches the target);
* **bootstrap**: for the main EncRL system (the EncRL group with the shortest name; the others are
  ablations) against every other student group of the ratio, a paired bootstrap over utterances of
  ``WER(other) - WER(EncRL)`` (positive: EncRL better) on each set decoded by the final models, the
  per-utterance errors of a system averaged over its seeds (:mod:`espnet_lw.benchmark.bootstrap`).
"""

from __future__ import annotations

import statistics
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from espnet_lw.benchmark.bootstrap import mean_errors, paired_bootstrap
from espnet_lw.benchmark.systems import BASELINES, CACHE_USERS, VALID_CER, System
from espnet_lw.benchmark.timing import cumulative, last_value, mean_curve, ratio_key, speedup, time_to_target

#: the cost measures, in the order the report shows them
MEASURES = ("wall_seconds", "updates", "audio_seconds")

UttErrors = Mapping[str, Tuple[float, int]]

#: issue 10's bars: the relative test-WER improvement of EncRL over scratch, per ratio key
BAR_VS_SCRATCH = {"0.667": 20.0, "0.833": 12.54}
#: and, at 66.7 %, the speed-up to the dev target against scratch and against the fastest baseline
BAR_SPEEDUP = {"0.667": (3.0, 1.5)}


def run_costs(s: System, n_cache_users: int) -> Dict[str, List[Optional[float]]]:
    """Cumulative cost per CTC epoch of one run, what it paid before its first CTC epoch included."""
    n = len(s.seconds_per_epoch)
    audio = s.train_audio_seconds
    uses_cache = s.kind in CACHE_USERS
    share = 1.0 / max(n_cache_users, 1) if uses_cache else 0.0
    encrl_epochs = s.encrl_epochs or 0
    pre_wall = (s.cache_share_seconds if uses_cache else 0.0) + (s.encrl_seconds or 0.0)
    pre_updates: Optional[float] = float(s.encrl_updates or 0)
    if s.kind == "encrl" and encrl_epochs and s.encrl_updates is None:
        pre_updates = None
    pre_audio = None if audio is None else audio * (encrl_epochs + share)
    updates = list(s.updates_per_epoch) + [None] * (n - len(s.updates_per_epoch))
    return {
        "wall_seconds": cumulative(s.seconds_per_epoch, pre_wall),
        "updates": cumulative(updates[:n], pre_updates),
        "audio_seconds": cumulative([audio] * n, pre_audio),
    }


def wer_stats(values: Sequence[Optional[float]]) -> dict:
    """mean, std (ddof 1, ``None`` for one value), min, max, n of the known values."""
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0, "values": list(values)}
    return {"mean": round(statistics.fmean(vals), 3),
            "std": round(statistics.stdev(vals), 3) if len(vals) > 1 else None,
            "min": min(vals), "max": max(vals), "n": len(vals), "values": list(values)}


def group_runs(systems: Sequence[System]) -> Dict[str, Dict[str, List[System]]]:
    """``{ratio key: {group: [runs sorted by seed]}}`` of the students (reference left out)."""
    out: Dict[str, Dict[str, List[System]]] = {}
    for s in systems:
        if s.kind == "reference" or s.ratio is None:
            continue
        out.setdefault(ratio_key(s.ratio), {}).setdefault(s.group or s.name, []).append(s)
    for groups in out.values():
        for runs in groups.values():
            runs.sort(key=lambda r: (-1 if r.seed is None else r.seed, r.name))
    return out


def main_encrl(groups: Mapping[str, List[System]]) -> Optional[str]:
    """The main EncRL group of a ratio: the EncRL group with the shortest name (the others: ablations)."""
    names = [g for g, runs in groups.items() if runs[0].kind == "encrl"]
    return min(names, key=lambda g: (len(g), g)) if names else None


def _target(runs: Optional[List[System]], dset: str) -> dict:
    if not runs:
        return {"set": dset, "wer": None, "system": None, "seeds": [], "how": "no scratch system at this ratio"}
    epoch, wer = last_value(mean_curve([r.curve(dset) for r in runs]))
    what = "validation CER (dev)" if dset == VALID_CER else f"{dset} WER"
    how = (f"mean over {len(runs)} scratch seeds of their last-epoch {what}" if len(runs) > 1
           else f"the scratch run's last-epoch {what}")
    if wer is None:
        how += " (not available: the last epoch is not decoded on every seed)"
    return {"set": dset, "metric": "cer" if dset == VALID_CER else "wer",
            "wer": None if wer is None else round(wer, 3), "epoch": epoch,
            "system": runs[0].group or runs[0].name, "seeds": [r.seed for r in runs], "how": how}


def _cost(runs: List[System], dset: str, target: Optional[float], n_cache_users: int) -> dict:
    per_run = [run_costs(r, n_cache_users) for r in runs]
    curve = mean_curve([r.curve(dset) for r in runs])
    mean_costs = {m: mean_curve([c[m] for c in per_run]) for m in MEASURES}
    out = time_to_target(curve, mean_costs, target)
    ft = mean_curve([cumulative(r.seconds_per_epoch) for r in runs])
    e = out["epoch"]
    out["finetune_only_wall_seconds"] = None if e is None or ft[e - 1] is None else round(ft[e - 1], 3)
    out["epochs_total"] = len(curve)
    out["per_seed"] = []
    for r, c in zip(runs, per_run):
        one = time_to_target(r.curve(dset), c, target)
        out["per_seed"].append({"seed": r.seed, "name": r.name, **one})
    return out


def compare_ratio(groups: Mapping[str, List[System]], target_set: str, bootstrap_sets: Sequence[str],
                  n_cache_users: int, utt_errors: Optional[Mapping[str, Mapping[str, UttErrors]]] = None,
                  resamples: int = 1000, seed: int = 0) -> dict:
    """The comparison of one ratio (see the module doc). ``utt_errors``: ``{run name: {set: errors}}``."""
    scratch = next((runs for runs in groups.values() if runs[0].kind == "scratch"), None)
    target = _target(scratch, target_set)
    encrl = main_encrl(groups)
    rows = []
    for g, runs in groups.items():
        first = runs[0]
        sets = sorted({d for r in runs for d in r.wer})
        rows.append({
            "name": g, "kind": first.kind, "loss": first.loss, "init": first.init,
            "role": "main" if g == encrl else ("baseline" if first.kind in BASELINES else
                                               ("ablation" if first.kind == "encrl" else "other")),
            "params": first.params, "seeds": [r.seed for r in runs], "runs": [r.name for r in runs],
            "epochs": first.epochs, "encrl_epochs": first.encrl_epochs,
            "wer": {d: wer_stats([r.wer.get(d) for r in runs]) for d in sets},
            "cost_to_target": _cost(runs, target_set, target["wer"], n_cache_users),
        })
    by = {r["name"]: r for r in rows}
    scratch_row = by.get(target["system"]) if target["system"] else None
    for row in rows:
        cost = row["cost_to_target"]
        row["speedup_vs_scratch"] = {m: speedup((scratch_row or {}).get("cost_to_target", {}).get(m), cost[m])
                                     for m in MEASURES}
        if row["role"] in ("baseline",):
            row["speedup_vs_fastest_baseline"] = None
            continue
        fastest = {}
        for m in MEASURES:
            cands = [(b["cost_to_target"][m], b["name"]) for b in rows
                     if b["role"] == "baseline" and b["cost_to_target"][m] is not None]
            if cands:
                best, name = min(cands)
                fastest[m] = {"baseline": name, "speedup": speedup(best, cost[m])}
            else:
                fastest[m] = {"baseline": None, "speedup": None}
        row["speedup_vs_fastest_baseline"] = fastest
    boot: Dict[str, Dict[str, Optional[dict]]] = {}
    if encrl and utt_errors is not None:
        enc_runs = groups[encrl]
        for g, runs in groups.items():
            if g == encrl:
                continue
            boot[g] = {}
            for dset in bootstrap_sets:
                a = [utt_errors.get(r.name, {}).get(dset) for r in runs]
                b = [utt_errors.get(r.name, {}).get(dset) for r in enc_runs]
                if any(x is None for x in a + b):
                    boot[g][dset] = None
                    continue
                res = paired_bootstrap(mean_errors(a), mean_errors(b), resamples=resamples, seed=seed)
                boot[g][dset] = None if res is None else res.to_dict()
        for row in rows:
            row["bootstrap_vs_encrl"] = boot.get(row["name"])
    return {"target": target, "main_encrl": encrl, "systems": rows,
            "bootstrap": {"of": "WER(system) - WER(main EncRL), WER points; positive: EncRL better",
                          "resamples": resamples, "seed": seed, "level": 0.95, "seeds": "per-utterance errors "
                          "averaged over each system's seeds", "sets": list(bootstrap_sets)}}


def compare(systems: Sequence[System], target_set: str, bootstrap_sets: Sequence[str], n_cache_users: int,
            utt_errors: Optional[Mapping[str, Mapping[str, UttErrors]]] = None, resamples: int = 1000,
            seed: int = 0) -> Dict[str, dict]:
    """:func:`compare_ratio` for every ratio with students, keyed by :func:`ratio_key`."""
    return {key: compare_ratio(groups, target_set, bootstrap_sets, n_cache_users, utt_errors, resamples, seed)
            for key, groups in sorted(group_runs(systems).items(), key=lambda kv: float(kv[0]))}
