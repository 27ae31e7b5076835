"""Time to target on the trainer's own validation CER: a dev curve at every epoch, with no decoding.

ESPnet's trainer decodes the valid set (dev in these recipes) with greedy CTC at the end of every
epoch and logs the character error rate (``[valid] cer_ctc``). That curve is a dev-only target that
costs nothing extra, so a benchmark gets a time-to-target even before (or without) the per-epoch
sclite decoding of :mod:`espnet_lw.benchmark.epochs`. The arithmetic is the dev-WER one
(:mod:`espnet_lw.benchmark.compare` with the curve :data:`~espnet_lw.benchmark.systems.VALID_CER`):
target = scratch's last-epoch validation CER, each system's cost to its own first crossing, everything
it paid included (cache share, EncRL epochs).

Two ways in:

* the report (:mod:`espnet_lw.benchmark.report`) adds ``comparison_valid_cer`` to benchmark.json and
  :func:`valid_cer_lines` to its section;
* :func:`from_logs`: from a committed ``benchmark.json`` and its ``logs/benchmark/`` alone (the
  ``<run>.train.log`` epoch lines the report copies there), so anyone can recompute it from a clone,
  without the exp dir (``python -m espnet_lw.bin.benchmark from_logs``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Sequence

from espnet_lw.benchmark.cells import fmt_fastest, fmt_x, speed_bar_cells
from espnet_lw.benchmark.compare import BAR_SPEEDUP, compare, group_runs, run_costs
from espnet_lw.benchmark.systems import CACHE_USERS, VALID_CER, System
from espnet_lw.benchmark.timing import mean_curve, parse_epoch_times, valid_cer_list
from espnet_lw.utils.cli import UserError
from espnet_lw.utils.env import human_duration


def valid_cer_comparison(systems: Sequence[System], n_cache_users: int) -> Dict[str, dict]:
    """:func:`~espnet_lw.benchmark.compare.compare` on the validation-CER curves (no bootstrap: that
    needs decoded hypotheses, which the final-model WERs have)."""
    return compare(systems, VALID_CER, [], n_cache_users)


def valid_cer_lines(comparison: Dict[str, dict], heading: str = "###") -> List[str]:
    """Markdown: per ratio, each system's validation CER at its last epoch, where it first reaches scratch's
    last-epoch validation CER, its cost to there (wall, updates) and the speed-ups; then the 66.7 % time
    bars judged on this target. ``[]`` when no ratio has a target."""
    if not any(c["target"]["wer"] is not None for c in comparison.values()):
        return []
    head = ["ratio", "system", "kind", "dev CER, last epoch", "reaches the target at", "wall", "updates",
            "speed-up vs scratch (wall / upd.)", "vs fastest baseline (wall / upd.)"]
    lines = ["", f"{heading} Time to target on the trainer's validation CER (dev, every epoch)", "",
             "Target: scratch's last-epoch validation CER at that ratio (ESPnet's `[valid] cer_ctc`, greedy CTC "
             "on dev, logged by the trainer at every epoch; `test` is not used). Cost: everything the system paid "
             "up to its own first epoch at or below it (KD/EncRL: cache share; EncRL: its EncRL epochs), wall = "
             "train+valid epoch time, updates = optimizer steps; mean over seeds.", "",
             "|" + "|".join(head) + "|", "|" + "---|" * len(head)]
    verdicts = []
    for key, comp in comparison.items():
        target = comp["target"]["wer"]
        for row in comp["systems"]:
            c = row["cost_to_target"]
            final = row.get("final_valid_cer")
            when = "-" if target is None else (f"epoch {c['epoch']}/{c['epochs_total']}" if c["reached"]
                                               else "not reached")
            vs = row["speedup_vs_scratch"]
            lines.append("|" + "|".join([
                key, f"`{row['name']}`", row["kind"], "-" if final is None else f"{final:.1f} %",
                when + (f" (target {target:.1f} %)" if row["kind"] == "scratch" and target is not None else ""),
                "-" if c["wall_seconds"] is None else human_duration(c["wall_seconds"]),
                "-" if c["updates"] is None else f"{c['updates']:,.0f}",
                f"{fmt_x(vs['wall_seconds'])} / {fmt_x(vs['updates'])}",
                "-" if row["role"] == "baseline" else fmt_fastest(row.get("speedup_vs_fastest_baseline"))]) + "|")
        bars = BAR_SPEEDUP.get(key)
        main = next((r for r in comp["systems"] if r["name"] == comp.get("main_encrl")), None)
        if bars and main is not None:
            cells = speed_bar_cells(main, bars)
            verdicts.append(f"Ratio {key}, `{main['name']}` against the bars (>= {bars[0]:g}x vs scratch, >= "
                            f"{bars[1]:g}x vs the fastest baseline) on this target: " + "; ".join(cells) + ".")
    if verdicts:
        lines += [""] + verdicts
    return lines


def add_final_cer(comparison: Dict[str, dict], systems: Sequence[System]) -> None:
    """Each row of ``comparison`` gets ``final_valid_cer``: its mean validation CER at the last epoch."""
    groups = group_runs(systems)
    for key, comp in comparison.items():
        for row in comp["systems"]:
            curve = mean_curve([r.curve(VALID_CER) for r in groups[key][row["name"]]])
            row["final_valid_cer"] = curve[-1] if curve else None


def from_logs(bench_json: Path, logs: Path) -> dict:
    """The validation-CER comparison of a committed report: the systems of ``bench_json`` with their
    validation CER read from ``<logs>/<run>.train.log`` (the epoch lines the report copies there).

    Returns ``{"comparison_valid_cer": ..., "systems_read": [...], "command": the benchmark's command,
    "provenance": its record, "cache_users"}`` (and ``"_systems"``, the records, for the plot). A run whose
    log is missing, or logs another number of epochs than benchmark.json counts, is refused by name: the
    numbers would silently mix sources."""
    if not bench_json.is_file():
        raise UserError("no such benchmark.json", str(bench_json), "give the report's benchmark.json")
    if not logs.is_dir():
        raise UserError("no such logs dir", str(logs), "give the report's logs/benchmark dir")
    try:
        bench = json.loads(bench_json.read_text(encoding="utf-8"))
        systems = [System.from_dict(s) for s in bench["systems"]]
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"not a benchmark report ({e})", str(bench_json), "give a benchmark.json written by "
                        "`python -m espnet_lw.bin.benchmark report`") from e
    read, missing = [], []
    for s in systems:
        if s.kind == "reference":
            continue
        log = logs / f"{s.name}.train.log"
        times = parse_epoch_times(log)
        if not times:
            missing.append(s.name)
            continue
        if len(times) != len(s.seconds_per_epoch):
            raise UserError(f"{len(times)} epochs logged, benchmark.json counts {len(s.seconds_per_epoch)} for "
                            f"{s.name}", str(log), "use the logs dir written with this benchmark.json")
        s.valid_cer_per_epoch = valid_cer_list(times)
        read.append(s.name)
    if missing:
        raise UserError(f"no epoch lines for {', '.join(missing)}", str(logs),
                        "use the logs dir written with this benchmark.json")
    n_users = sum(1 for s in systems if s.kind in CACHE_USERS)
    comparison = valid_cer_comparison(systems, n_users)
    add_final_cer(comparison, systems)
    return {"comparison_valid_cer": comparison, "systems_read": read,
            "command": bench.get("command"), "provenance": bench.get("provenance"),
            "_systems": systems, "cache_users": n_users}


def plot_valid_cer(systems: Sequence[System], n_cache_users: int, comparison: Dict[str, dict], out: Path) -> bool:
    """One column per ratio: mean validation CER against the mean cumulative cost, wall minutes (top) and
    optimizer updates (bottom: what a slower or busier machine cannot tilt), one line per system, the
    target dashed. ``False`` when nothing was drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"scratch": "tab:red", "pruned": "tab:orange", "control": "tab:green", "kd": "tab:purple",
              "encrl": "tab:blue"}
    keys = [k for k, c in comparison.items() if c["target"]["wer"] is not None]
    if not keys:
        return False
    fig, axes = plt.subplots(2, len(keys), figsize=(5 * len(keys), 8), squeeze=False)
    groups = group_runs(systems)
    measures = (("wall_seconds", 1 / 60.0, "student training wall time, minutes (cache share + EncRL incl.)"),
                ("updates", 1.0, "optimizer updates (EncRL incl.)"))
    for col, key in enumerate(keys):
        comp = comparison[key]
        for row_i, (measure, scale, xlabel) in enumerate(measures):
            ax = axes[row_i][col]
            for row in comp["systems"]:
                runs = groups[key][row["name"]]
                cer = mean_curve([r.curve(VALID_CER) for r in runs])
                cost = mean_curve([run_costs(r, n_cache_users)[measure] for r in runs])
                pts = [(x * scale, c) for x, c in zip(cost, cer) if x is not None and c is not None]
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3,
                            color=colors.get(row["kind"], "gray"),
                            linestyle=":" if row["role"] == "ablation" else "-", label=f"{row['kind']} (n={len(runs)})")
            ax.axhline(comp["target"]["wer"], color="gray", linewidth=0.7, linestyle="--")
            ax.set_title(f"ratio {key}: dev CER (trainer's validation)")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("dev CER %, mean over seeds")
            ax.set_ylim(top=min(60.0, ax.get_ylim()[1]))
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return True
