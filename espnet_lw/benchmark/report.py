"""The benchmark's report: benchmark.json, the RESULTS.md section and the WER-vs-time plot.

Built from the exp tree as it is (no training, no decoding): the systems found by
:func:`~espnet_lw.benchmark.systems.discover_systems`, their ``train.log`` epoch times, final
sclite WERs and cached per-epoch WERs (:mod:`espnet_lw.benchmark.epochs`), and the speed-ups of
:mod:`espnet_lw.benchmark.timing`.

The x axis of the plot is *student training wall time*: an EncRL student's curve starts after
its EncRL epochs and the reference-target cache (``dump_reference_targets``, timed in
``stage_times.tsv``), which is counted in full for every EncRL student (conservative;
``speedup_to_target_amortised`` shares it among the EncRL students). The reference's own
training is not counted: it is the model being compressed.
"""

from __future__ import annotations

import datetime
import json
import logging
import platform
import shutil
from pathlib import Path
from typing import List, Optional, Sequence

from espnet_lw.benchmark.epochs import load_epoch_cache, wer_per_epoch
from espnet_lw.benchmark.systems import (
    System,
    discover_systems,
    final_wers,
    primary_reference,
    read_params,
    reference_cache_seconds,
)
from espnet_lw.benchmark.timing import compute_speedups, parse_epoch_times, ratio_key, seconds_list
from espnet_lw.utils.cli import UserError
from espnet_lw.utils.env import (
    cpu_description,
    espnet_lw_version,
    git_dirty,
    git_head,
    gpu_description,
    human_duration,
    package_version,
)
from espnet_lw.utils.io import atomic_write_text

BEGIN_MARK = "<!-- benchmark:begin -->"
END_MARK = "<!-- benchmark:end -->"


def environment() -> dict:
    """benchmark.json's ``environment``: date, versions, the git commit of espnet_lw, CPU and GPU."""
    here = Path(__file__).resolve().parent
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": package_version("torch"),
        "espnet": package_version("espnet"),
        "espnet_lw": espnet_lw_version(),
        "git_commit": git_head(here),
        "git_dirty": git_dirty(here),
        "cpu": cpu_description(),
        "gpu": gpu_description(),
    }


def build_benchmark(expdir: Path, test_sets: Sequence[str], epoch_sets: Sequence[str], command: Optional[str],
                    decode: Optional[str] = None, ref_exp: Optional[Path] = None,
                    env: Optional[dict] = None) -> dict:
    """benchmark.json's content from the exp tree (no training, no decoding)."""
    dirs = discover_systems(expdir, ref_exp)
    if not dirs:
        raise UserError("no trained reference or student under the expdir", str(expdir),
                        "run local/benchmark.sh (or ./run.sh) first")
    primary = primary_reference(dirs, ref_exp)
    cache_secs = round(reference_cache_seconds(expdir, primary), 3)
    systems: List[System] = []
    for s in dirs:
        times = seconds_list(parse_epoch_times(s.exp / "train.log"))
        encrl_secs = encrl_epochs = None
        if s.kind == "encrl":
            encrl_times = seconds_list(parse_epoch_times(s.exp / "encrl" / "train.log"))
            encrl_secs, encrl_epochs = round(sum(encrl_times), 3), len(encrl_times)
        cache = load_epoch_cache(expdir, s.name)
        train = sum(times) + ((encrl_secs or 0.0) + cache_secs if s.kind == "encrl" else 0.0)
        systems.append(System(
            name=s.name, kind=s.kind, ratio=s.ratio, loss=s.loss, params=read_params(s.exp),
            epochs=len(times), train_seconds=round(train, 3),
            wer=final_wers(s.exp, test_sets, decode),
            wer_per_epoch={d: wer_per_epoch(cache, d, len(times)) for d in epoch_sets},
            seconds_per_epoch=times, encrl_seconds=encrl_secs, encrl_epochs=encrl_epochs,
        ))
    speed_set = epoch_sets[0] if epoch_sets else None
    n_encrl = sum(1 for s in systems if s.kind == "encrl")
    full, ft_only, amort, details = {}, {}, {}, {}
    for ratio in sorted({s.ratio for s in systems if s.kind == "encrl" and s.ratio is not None}):
        scratch = _main_system(systems, "scratch", ratio)
        encrl = _main_system(systems, "encrl", ratio)
        if scratch is None or encrl is None or speed_set is None:
            continue
        r = compute_speedups(scratch, encrl, cache_secs, n_encrl, speed_set)
        key = ratio_key(ratio)
        full[key], ft_only[key], amort[key], details[key] = r["full"], r["finetune_only"], r["amortised"], r["details"]
    return {
        "systems": [s.to_dict() for s in systems],
        "speedup_to_target": full,
        "speedup_to_target_finetune_only": ft_only,
        "speedup_to_target_amortised": amort,
        "speedup_details": details,
        "reference_cache_seconds": cache_secs,
        "epoch_test_sets": list(epoch_sets),
        "definitions": {
            "ratio": "fraction of the reference's encoder blocks removed",
            "train_seconds": "sum of train+valid epoch times of the CTC model; for encrl also the EncRL epochs "
                             "and the reference-target cache (counted in full)",
            "speedup_to_target": "scratch seconds / (EncRL + reference-target cache + fine-tune seconds until the "
                                 "EncRL student's WER <= the scratch student's last-epoch WER)",
            "speedup_to_target_finetune_only": "scratch seconds / fine-tune seconds until that WER (paper's count)",
            "speedup_to_target_amortised": "as speedup_to_target, the cache shared among the EncRL students",
        },
        "command": command,
        "environment": env if env is not None else environment(),
    }


def _main_system(systems: Sequence[System], kind: str, ratio: Optional[float]) -> Optional[System]:
    """The system of ``kind`` at ``ratio`` the speed-up uses: for encrl the clip+mse one; shortest name."""
    if ratio is None:
        return None
    cands = [s for s in systems if s.kind == kind and s.ratio is not None and abs(s.ratio - ratio) < 1e-6]
    if kind == "encrl":
        cands = [s for s in cands if s.loss == "clip+mse"] or cands
    return min(cands, key=lambda s: (len(s.name), s.name)) if cands else None


def _fmt_wer(w: Optional[float]) -> str:
    return "-" if w is None else f"{w:.1f}"


def _fmt_ratio(r: Optional[float]) -> str:
    return "?" if r is None else f"{r:g}"


def _fmt_speed(x: Optional[float]) -> str:
    return "not reached" if x is None else f"{x:.2f}x"


def render_markdown(bench: dict, test_sets: Sequence[str], plot_name: Optional[str]) -> str:
    """The RESULTS.md section between the benchmark markers."""
    systems = [System.from_dict(s) for s in bench["systems"]]
    lines = [BEGIN_MARK, "## Benchmark: light-weight students", "",
             "Written by `python -m espnet_lw.bin.benchmark` (numbers also in `benchmark.json`). "
             "WER: sclite, CTC greedy, final model (`valid.loss.ave.pth`). Epochs: EncRL + fine-tune for "
             "EncRL students (`epochs` in the json counts the CTC epochs, `encrl_epochs` the others). "
             "Train time: summed train+valid "
             "epoch times from `train.log`; for EncRL students EncRL + reference-target cache + fine-tune "
             "(fine-tune alone in brackets). Rel. impr.: (WER scratch - WER) / WER scratch at the same ratio.",
             "", "```sh", bench.get("command") or "(command not recorded)", "```", ""]
    head = ["system", "kind", "ratio", "loss", "params", "epochs", "train time"]
    head += [f"WER {d}" for d in test_sets] + ["rel. WER impr. vs scratch"]
    lines += ["|" + "|".join(head) + "|", "|" + "---|" * len(head)]
    for s in systems:
        t = human_duration(s.train_seconds)
        if s.kind == "encrl":
            t += f" (ft {human_duration(sum(s.seconds_per_epoch))})"
        params = "-" if s.params is None else f"{s.params / 1e6:.2f} M"
        impr = "-"
        if s.kind in ("encrl", "pruned"):
            scratch = _main_system(systems, "scratch", s.ratio)
            if scratch is not None:
                cells = []
                for d in test_sets:
                    a, b = scratch.wer.get(d), s.wer.get(d)
                    if a is not None and b is not None and a > 0:
                        cells.append(f"{d} {100 * (a - b) / a:+.1f}%")
                impr = ", ".join(cells) or "-"
        epochs = str(s.epochs) if not s.encrl_epochs else f"{s.encrl_epochs} + {s.epochs}"
        row = [s.name, s.kind, _fmt_ratio(s.ratio), s.loss or "-", params, epochs, t]
        row += [_fmt_wer(s.wer.get(d)) for d in test_sets] + [impr]
        lines.append("|" + "|".join(row) + "|")
    lines += ["", f"Speed-up to reach the scratch student's last-epoch WER on "
                  f"`{(bench.get('epoch_test_sets') or ['?'])[0]}` (scratch wall time / EncRL student's):", ""]
    if not bench["speedup_to_target"]:
        lines.append("- not available (needs a scratch and an EncRL student at the same ratio, with per-epoch WERs)")
    for key, det in bench["speedup_details"].items():
        ep = det["reached_epoch"]
        lines.append(
            f"- ratio {key} (`{det['encrl_system']}` vs `{det['scratch_system']}`, target WER "
            f"{_fmt_wer(det['target_wer'])}%{'' if ep is None else f', reached at fine-tune epoch {ep}'}): "
            f"fine-tune only {_fmt_speed(bench['speedup_to_target_finetune_only'][key])} (the paper's count); "
            f"whole student cost {_fmt_speed(bench['speedup_to_target'][key])} "
            f"(EncRL + reference targets counted in full); "
            f"{_fmt_speed(bench['speedup_to_target_amortised'][key])} with the reference targets "
            f"({human_duration(det['reference_cache_seconds'])}) shared by {det['n_encrl_students']} EncRL students")
    if plot_name:
        lines += ["", f"![WER vs student training wall time]({plot_name})"]
    lines.append(END_MARK)
    return "\n".join(lines) + "\n"


def replace_section(text: str, section: str) -> str:
    """``text`` with the marked benchmark section replaced by ``section`` (appended if absent)."""
    start, end = text.find(BEGIN_MARK), text.find(END_MARK)
    if start != -1 and end != -1 and end > start:
        tail = text[end + len(END_MARK):]
        return text[:start] + section.rstrip("\n") + ("\n\n" + tail.lstrip("\n") if tail.strip() else "\n")
    return (text.rstrip("\n") + "\n\n" if text.strip() else "") + section


def plot_wer_vs_time(bench: dict, out: Path, dset: Optional[str]) -> bool:
    """WER on ``dset`` against cumulative student training wall time, one line per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"reference": "black", "scratch": "tab:red", "pruned": "tab:orange", "encrl": "tab:blue"}
    styles = {"clip+mse": "-", "mse": "--", "clip": ":"}
    markers = {0.0: "D", 0.5: "o", 0.667: "s", 0.833: "^"}
    fig, ax = plt.subplots(figsize=(8, 5))
    n = 0
    for s in (System.from_dict(d) for d in bench["systems"]):
        wers = s.wer_curve(dset)
        offset = (s.encrl_seconds or 0.0) + bench["reference_cache_seconds"] if s.kind == "encrl" else 0.0
        xs, ys, cum = [], [], offset
        for w, sec in zip(wers, s.seconds_per_epoch):
            cum += sec
            if w is not None:
                xs.append(cum / 60.0)
                ys.append(w)
        if not xs:
            continue
        ax.plot(xs, ys, marker=markers.get(s.ratio, "x"), markersize=4, color=colors.get(s.kind, "gray"),
                linestyle=styles.get(s.loss or "", "-"), alpha=0.6 + 0.4 * (1 - (s.ratio or 0.0)),
                label=f"{s.name} ({s.kind}, ratio {_fmt_ratio(s.ratio)})")
        n += 1
    ax.set_xlabel("student training wall time (minutes; EncRL students start after EncRL + reference targets)")
    ax.set_ylabel(f"WER on {dset} (%)")
    ax.set_title("WER vs training wall time (CTC greedy, every epoch)")
    ax.grid(True, alpha=0.3)
    if n:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no per-epoch WERs yet (python -m espnet_lw.bin.benchmark epochs)",
                ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return n > 0


def keep_foreign_keys(path: Path, bench: dict) -> dict:
    """``bench`` plus the top-level keys of an existing ``path`` that other tools own (e.g. ``device``)."""
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return bench
    if not isinstance(old, dict):
        return bench
    return {**bench, **{k: v for k, v in old.items() if k not in bench}}


def write_report(recipe: Path, expdir: Path, test_sets: Sequence[str], epoch_sets: Sequence[str],
                 command: Optional[str], decode: Optional[str] = None, ref_exp: Optional[Path] = None,
                 results: str = "RESULTS.md", env: Optional[dict] = None) -> dict:
    """Write benchmark.json, the plot and the RESULTS.md section (+ copies next to RESULTS.md)."""
    bdir = expdir / "benchmark"
    if command is None and (bdir / "benchmark.json").is_file():
        command = json.loads((bdir / "benchmark.json").read_text(encoding="utf-8")).get("command")
    bench = build_benchmark(expdir, test_sets, epoch_sets, command, decode, ref_exp, env)
    results_path = recipe / results
    for path in (bdir / "benchmark.json", results_path.parent / "benchmark.json"):
        atomic_write_text(path, json.dumps(keep_foreign_keys(path, bench), indent=1) + "\n")
    plot = bdir / "wer_vs_time.png"
    plot_wer_vs_time(bench, plot, epoch_sets[0] if epoch_sets else None)
    plot_copy = results_path.parent / "benchmark_wer_vs_time.png"
    shutil.copyfile(plot, plot_copy)
    old = results_path.read_text(encoding="utf-8") if results_path.is_file() else ""
    atomic_write_text(results_path, replace_section(old, render_markdown(bench, test_sets, plot_copy.name)))
    logging.info("wrote %s, %s, %s and the section of %s", bdir / "benchmark.json", plot, plot_copy, results_path)
    return bench
