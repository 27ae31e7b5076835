"""The benchmark's report: benchmark.json, the RESULTS.md section, the plot and the logs behind them.

Built from the exp tree as it is (no training, no decoding): the systems found by
:func:`~espnet_lw.benchmark.systems.discover_systems` (one per run: seeds are runs of one system),
their ``train.log`` epoch times and update counts, final sclite WERs and per-utterance errors, cached
per-epoch WERs (:mod:`espnet_lw.benchmark.epochs`); the comparison of each ratio (dev target, cost to
it, statistics, bootstrap) is :mod:`espnet_lw.benchmark.compare`; where the numbers come from (commit,
clean tree, command, machine) is :mod:`espnet_lw.benchmark.provenance`.

The x axis of the plot is *student training wall time*: a KD or EncRL student's curve starts after
its share of the reference-target cache and (EncRL) its EncRL epochs. The reference's own training is
not counted: it is the model being compressed.

Next to RESULTS.md, ``logs/benchmark/`` gets the logs behind every number (rewritten by each report):
the epoch-summary lines of every ``train.log``, per-epoch costs and WERs, the per-utterance errors the
bootstrap resamples, ``stage_times.tsv`` and the provenance record.
"""

from __future__ import annotations

import datetime
import json
import logging
import platform
import re
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from espnet_lw.benchmark.bootstrap import utterance_errors
from espnet_lw.benchmark.cells import fmt_fastest, fmt_x, met, speed_bar_cells
from espnet_lw.benchmark.compare import BAR_SPEEDUP, BAR_VS_SCRATCH, MEASURES, compare, run_costs
from espnet_lw.benchmark.epochs import load_epoch_cache, wer_per_epoch
from espnet_lw.benchmark.provenance import data_fingerprint
from espnet_lw.benchmark.systems import (
    CACHE_USERS,
    DEFAULT_DECODE,
    System,
    SystemDir,
    discover_systems,
    final_wers,
    primary_reference,
    read_accum_grad,
    read_params,
    read_student_json,
    reference_cache_seconds,
    train_audio_seconds,
)
from espnet_lw.benchmark.timing import (
    epoch_summary_lines,
    mean_curve,
    parse_epoch_times,
    seconds_list,
    updates_list,
    valid_cer_list,
)
from espnet_lw.benchmark.valid_cer import add_final_cer, valid_cer_comparison, valid_cer_lines
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
from espnet_lw.utils.io import atomic_write_text, load_yaml

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


#: keys of earlier versions of benchmark.json that this report owns and no longer writes
RETIRED_KEYS = ("speedup_to_target", "speedup_to_target_finetune_only", "speedup_to_target_amortised",
                "speedup_details")

DEFINITIONS = {
    "ratio": "fraction of the reference's encoder blocks removed",
    "seeds": "every student run is trained with an explicit --student_seed; the runs of one system (its seeds) "
             "share a group name (the exp dir name without _seed<N>)",
    "wer": "sclite WER (%) of the final model (valid.loss.ave.pth, CTC greedy) on each test set, decoded once",
    "wer_per_epoch": "CTC-greedy WER of every epoch checkpoint on the epoch test sets (dev only by default)",
    "target": "per ratio: the scratch system's WER at its last epoch on the target set (dev), the mean over its "
              "seeds where it has several; test is never used for the target",
    "cost_to_target": "first epoch at which the system's mean (over seeds) per-epoch target-set WER <= target; "
                      "cost = mean over seeds of everything paid up to that epoch: share of the reference-target "
                      "cache (KD/EncRL: cache wall time / number of runs reading it), all EncRL epochs, CTC "
                      "epochs up to the crossing. wall_seconds: train+valid epoch times from train.log; updates: "
                      "optimizer steps (train.log total_count differences // accum_grad); audio_seconds: "
                      "training audio processed (epochs x training-set duration, the cache share as a fraction "
                      "of one pass)",
    "speedup": "cost of the scratch system (or of the fastest baseline, per measure) / cost of the system, both to "
               "the same dev target",
    "bootstrap": "paired bootstrap over utterances (1000 resamples, fixed seed, 95 % percentile interval) of "
                 "WER(system) - WER(main EncRL) in WER points, per-utterance errors averaged over seeds",
    "train_seconds": "sum of train+valid epoch times of the run; KD/EncRL: plus EncRL epochs and the cache share",
}


def _utt_errors(exp: Path, decode: Optional[str], sets: Sequence[str]) -> Dict[str, dict]:
    ddir = exp / (decode or DEFAULT_DECODE)
    if not decode and not ddir.is_dir():
        dirs = sorted(p for p in exp.glob("decode_*") if p.is_dir())
        ddir = dirs[0] if dirs else ddir
    out = {}
    for dset in sets:
        sdir = ddir / dset / "score_wer"
        if (sdir / "ref.trn").is_file() and (sdir / "hyp.trn").is_file():
            out[dset] = utterance_errors(sdir)
    return out


def collect_systems(expdir: Path, dirs: Sequence[SystemDir], test_sets: Sequence[str], epoch_sets: Sequence[str],
                    decode: Optional[str], cache_secs: float, base: Path) -> List[System]:
    """The :class:`System` record of every run of ``dirs``."""
    n_users = sum(1 for s in dirs if s.kind in CACHE_USERS)
    share = round(cache_secs / n_users, 3) if n_users else 0.0
    systems = []
    for s in dirs:
        parsed = parse_epoch_times(s.exp / "train.log")
        times = seconds_list(parsed)
        updates = updates_list(parsed, read_accum_grad(s.conf))
        encrl_secs = encrl_epochs = encrl_updates = None
        if s.kind == "encrl":
            enc_parsed = parse_epoch_times(s.exp / "encrl" / "train.log")
            encrl_times = seconds_list(enc_parsed)
            encrl_secs, encrl_epochs = round(sum(encrl_times), 3), len(encrl_times)
            enc_conf = s.exp / "encrl" / "config.yaml"
            accum = read_accum_grad(load_yaml(enc_conf, "EncRL config", allow_empty=True)) if enc_conf.is_file() else 1
            enc_updates = updates_list(enc_parsed, accum)
            encrl_updates = None if any(u is None for u in enc_updates) else sum(enc_updates)
        cache = load_epoch_cache(expdir, s.name)
        own_share = share if s.kind in CACHE_USERS else 0.0
        systems.append(System(
            name=s.name, kind=s.kind, ratio=s.ratio, loss=s.loss, params=read_params(s.exp),
            epochs=len(times), train_seconds=round(sum(times) + (encrl_secs or 0.0) + own_share, 3),
            wer=final_wers(s.exp, test_sets, decode),
            wer_per_epoch={d: wer_per_epoch(cache, d, len(times)) for d in epoch_sets},
            seconds_per_epoch=times, encrl_seconds=encrl_secs, encrl_epochs=encrl_epochs,
            group=None if s.kind == "reference" else s.group, seed=s.seed, init=s.init,
            identity=None if s.kind == "reference" else s.identity,
            updates_per_epoch=updates, encrl_updates=encrl_updates,
            train_audio_seconds=train_audio_seconds(s.conf, base), cache_share_seconds=own_share,
            valid_cer_per_epoch=valid_cer_list(parsed),
        ))
    return systems


def build_benchmark(expdir: Path, test_sets: Sequence[str], epoch_sets: Sequence[str], command: Optional[str],
                    decode: Optional[str] = None, ref_exp: Optional[Path] = None,
                    env: Optional[dict] = None, provenance: Optional[dict] = None, base: Optional[Path] = None,
                    dumpdir: Optional[Path] = None, resamples: int = 1000, seed: int = 0,
                    with_errors: bool = False) -> dict:
    """benchmark.json's content from the exp tree (no training, no decoding).

    ``epoch_sets[0]`` is the target set (dev); the bootstrap runs on every set of ``test_sets``.
    ``base``: the dir the training configs' relative paths start from (the recipe dir; default: cwd).
    ``with_errors``: also return the per-utterance errors under ``"_utt_errors"`` (for the logs).
    """
    dirs = discover_systems(expdir, ref_exp)
    if not dirs:
        raise UserError("no trained reference or student under the expdir", str(expdir),
                        "run local/benchmark.sh (or ./run.sh) first")
    base = Path.cwd() if base is None else base
    primary = primary_reference(dirs, ref_exp)
    cache_secs = round(reference_cache_seconds(expdir, primary), 3)
    systems = collect_systems(expdir, dirs, test_sets, epoch_sets, decode, cache_secs, base)
    n_users = sum(1 for s in systems if s.kind in CACHE_USERS)
    errors = {s.name: _utt_errors(d.exp, decode, test_sets) for s, d in zip(systems, dirs) if s.kind != "reference"}
    target_set = epoch_sets[0] if epoch_sets else None
    comparison = compare(systems, target_set, list(test_sets), n_users, errors, resamples, seed) if target_set else {}
    comparison_cer = valid_cer_comparison(systems, n_users)
    add_final_cer(comparison_cer, systems)
    bench = {
        "systems": [s.to_dict() for s in systems],
        "comparison": comparison,
        "comparison_valid_cer": comparison_cer,
        "target_set": target_set,
        "epoch_test_sets": list(epoch_sets),
        "test_sets": list(test_sets),
        "reference_cache_seconds": cache_secs,
        "cache_users": n_users,
        "definitions": DEFINITIONS,
        "command": command,
        "provenance": provenance,
        "data": data_fingerprint(dumpdir, sorted(set(test_sets) | set(epoch_sets))) if dumpdir else {},
        "environment": env if env is not None else environment(),
    }
    if with_errors:
        bench["_utt_errors"] = errors
    return bench


def _fmt_wer(w: Optional[float]) -> str:
    return "-" if w is None else f"{w:.1f}"


def _fmt_ratio(r: Optional[float]) -> str:
    return "?" if r is None else f"{r:g}"


def _fmt_stats(st: Optional[dict]) -> str:
    """``39.2 ± 0.8 (n=3, 38.4-40.1)``; one run: ``39.2 (n=1)``."""
    if not st or st.get("mean") is None:
        return "-"
    if st["n"] == 1:
        return f"{st['mean']:.1f} (n=1)"
    return f"{st['mean']:.1f} ± {st['std']:.1f} (n={st['n']}, {st['min']:.1f}-{st['max']:.1f})"


def _fmt_boot(b: Optional[dict]) -> str:
    if not b:
        return "-"
    mark = " *" if b["excludes_zero"] else ""
    return f"{b['delta']:+.1f} [{b['low']:+.1f}, {b['high']:+.1f}]{mark}"


def _fmt_updates(u: Optional[float]) -> str:
    return "-" if u is None else f"{u:,.0f}"


def warning_lines(prov: Optional[dict]) -> List[str]:
    """The visible warning of a benchmark that is not one clean run (empty when it is)."""
    if prov is None:
        return ["> **WARNING: no provenance recorded** (written without `benchmark report`'s checks): the commit "
                "and tree state behind these numbers are unknown.", ""]
    if not prov.get("warnings"):
        return []
    lines = ["> **WARNING: not one clean benchmark run**; these numbers may not be reproducible from the commit "
             "below:"]
    lines += [f"> - {w}" for w in prov["warnings"]]
    return lines + [""]


#: the group name of a budget run: ``<config stem>_e<EncRL epochs>`` (espnet_lw.benchmark.ablation)
BUDGET_NAME = re.compile(r"^(?P<config>.+)_e(?P<epochs>\d+)$")


def budget_lines(comp: dict, target_set: str) -> List[str]:
    """Per budget config of a ratio: its final ``target_set`` WER for each number of EncRL epochs, and the
    fewest EncRL epochs whose WER beats the scratch target (``[]`` when the ratio has no budget runs)."""
    by_config: Dict[str, List[Tuple[int, dict]]] = {}
    for row in comp["systems"]:
        m = BUDGET_NAME.match(row["name"])
        if m and row["kind"] == "encrl":
            by_config.setdefault(m.group("config"), []).append((int(m.group("epochs")), row))
    target = comp["target"]["wer"]
    out: List[str] = []
    for config, runs in sorted(by_config.items()):
        runs.sort(key=lambda r: r[0])
        cells = []
        beaten = None
        for n, row in runs:
            w = (row["wer"].get(target_set) or {}).get("mean")
            cells.append(f"{n}: {_fmt_wer(w)}")
            if beaten is None and w is not None and target is not None and w < target:
                beaten = (n, row)
        if target is None:
            verdict = "no scratch target at this ratio"
        elif beaten is None:
            verdict = (f"**not beaten** within {runs[-1][0]} EncRL epochs (the most tried; each adds its "
                       "epoch time to the student's cost)")
        else:
            n, row = beaten
            c = row["cost_to_target"]
            cost = human_duration(c["wall_seconds"]) if c["reached"] else "its curve did not reach it"
            verdict = f"beaten with {n} EncRL epochs (cost to the target, all paid: {cost})"
        out += ["", f"EncRL-epoch budget of `{config}`: final `{target_set}` WER by EncRL epochs "
                    f"({'; '.join(cells)}) against the scratch target {_fmt_wer(target)}: {verdict}."]
    return out




def bar_rows(key: str, comp: dict, boot_set: Optional[str], ref_wer: Optional[float] = None) -> Optional[List[str]]:
    """One row of the bars table for the comparison of ratio ``key`` (``None`` without a main EncRL
    system): EncRL's ``boot_set`` WER, the best baseline's, the bootstrap against the control, the
    relative improvement over scratch and the speed-ups, each with its bar and whether it is met, and
    the improvement over scratch of a student exactly as good as the reference (``ref_wer``): a bar above
    it asks the student to beat its own reference."""
    rows = {r["name"]: r for r in comp["systems"]}
    enc = rows.get(comp.get("main_encrl") or "")
    if enc is None or not boot_set:
        return None

    def mean(r: Optional[dict]) -> Optional[float]:
        return None if r is None else (r["wer"].get(boot_set) or {}).get("mean")

    e = mean(enc)
    bases = [r for r in comp["systems"] if r["role"] == "baseline" and mean(r) is not None]
    best = min(bases, key=mean) if bases else None
    beats = None if e is None or best is None else e < mean(best)
    control = next((r for r in bases if r["kind"] == "control"), None)
    boot = ((control or {}).get("bootstrap_vs_encrl") or {}).get(boot_set)
    boot_ok = None if not boot else bool(boot["excludes_zero"] and boot["delta"] > 0)
    scratch = next((r for r in bases if r["kind"] == "scratch"), None)
    rel = None if e is None or scratch is None else 100.0 * (mean(scratch) - e) / mean(scratch)
    bar = BAR_VS_SCRATCH.get(key)
    rel_txt = "-" if rel is None else f"{rel:+.1f} %"
    if bar is not None:
        rel_txt += f" (bar >= {bar:g} %: {met(None if rel is None else rel >= bar)})"
    sp = BAR_SPEEDUP.get(key)
    speed_txt = "-"
    if sp is not None:
        speed_txt = f"bars {sp[0]:g}x / {sp[1]:g}x; " + "; ".join(speed_bar_cells(enc, sp))
    ceiling = None if ref_wer is None or scratch is None else 100.0 * (mean(scratch) - ref_wer) / mean(scratch)
    return [key, _fmt_wer(e),
            "-" if best is None else f"{_fmt_wer(mean(best))} (`{best['name']}`)",
            met(beats), _fmt_boot(boot) + ("" if boot_ok is None else f" ({met(boot_ok)})"),
            rel_txt, "-" if ceiling is None else f"{ceiling:+.1f} %", speed_txt]


def bar_lines(bench: dict, boot_set: Optional[str]) -> List[str]:
    """The section's summary against issue 10's done-when: per ratio, whether the main EncRL student beats
    every baseline on ``boot_set``, beats the control with a bootstrap interval that excludes 0, improves on
    scratch by the bar, and (at 66.7 %) reaches the dev target the bars' times faster."""
    refs = [(r.get("wer") or {}).get(boot_set) for r in bench.get("systems") or [] if r["kind"] == "reference"]
    ref_wer = next((w.get("mean") if isinstance(w, dict) else w for w in refs if w is not None), None)
    rows = []
    for key, comp in (bench.get("comparison") or {}).items():
        row = bar_rows(key, comp, boot_set, ref_wer)
        if row:
            rows.append(row)
    if not rows:
        return []
    head = ["ratio", f"EncRL {boot_set} WER", "best baseline", "beats every baseline",
            "Δ control vs EncRL [95 % CI]", "vs scratch (relative)",
            "a student as good as the reference vs scratch", "speed-up to the dev target: vs scratch / vs "
            "fastest baseline"]
    return ["", "### Against the bars (issue 10)", "", "|" + "|".join(head) + "|", "|" + "---|" * len(head)] + [
        "|" + "|".join(r) + "|" for r in rows]


def later_commands(prov: Optional[dict], first: Optional[str]) -> List[str]:
    """The commands of the run's later invocations that differ from ``first`` (e.g. ``--budget_epochs``
    added after the main matrix), each once, in order: resuming with the same command adds nothing here."""
    out: List[str] = []
    for run in (prov or {}).get("runs") or []:
        cmd = run.get("command")
        if cmd and cmd != first and cmd not in out:
            out.append(cmd)
    return out


def render_markdown(bench: dict, test_sets: Sequence[str], plot_name: Optional[str]) -> str:
    """The RESULTS.md section between the benchmark markers."""
    prov = bench.get("provenance")
    target_set = bench.get("target_set") or "dev"
    boot_set = "test" if "test" in test_sets else next((d for d in test_sets if d != target_set), None)
    lines = [BEGIN_MARK, "## Benchmark: light-weight students", ""]
    lines += warning_lines(prov)
    if prov:
        m = prov.get("machine") or {}
        lines.append(f"One command at commit `{prov.get('commit')}` "
                     f"({'clean tree' if prov.get('clean') else 'NOT a clean tree, see the warning'}; "
                     f"{len(prov.get('runs') or [])} invocation(s)), on {m.get('cpu', '?')}"
                     f"{'' if not m.get('gpu') or m.get('gpu') == 'none detected' else ', GPU ' + m['gpu']}:")
    lines += ["", "```sh", bench.get("command") or "(command not recorded)", "```", ""]
    later = later_commands(prov, bench.get("command"))
    if later:
        lines += ["Then, in the same expdir at the same commit (adding systems; the ones above were reused, "
                  "not retrained):", "", "```sh", *later, "```", ""]
    lines.append(
        f"Written by `python -m espnet_lw.bin.benchmark report` (numbers in `benchmark.json`, the logs behind them "
        f"in `logs/benchmark/`). WER: sclite, CTC greedy, final model (`valid.loss.ave.pth`), each test set decoded "
        f"once per final model; mean ± std over seeds (n runs, min-max). Target: the scratch system's last-epoch "
        f"`{target_set}` WER at that ratio (mean over its seeds); `test` is not used for it. Cost to target: to the "
        f"first epoch where the system's mean `{target_set}` curve reaches the target, everything it paid "
        f"(KD/EncRL: share of the reference-target cache; EncRL: all EncRL epochs; then CTC epochs), mean over "
        f"seeds; wall = train+valid epoch time, updates = optimizer steps. Speed-ups: scratch's cost (or the "
        f"fastest baseline's, per measure) / the system's. Δ: WER(system) - WER(EncRL) on `{boot_set}`, paired "
        f"bootstrap 95 % interval over utterances (* : excludes 0; positive: EncRL better).")
    head = ["system", "kind", "init", "params", "epochs"] + [f"WER {d}" for d in test_sets]
    head += [f"Δ {boot_set} vs EncRL [95 % CI]", "to target: wall", "updates", "speed-up vs scratch (wall / upd.)",
             "vs fastest baseline (wall / upd.)"]
    for key, comp in (bench.get("comparison") or {}).items():
        t = comp["target"]
        tw = "not available" if t["wer"] is None else f"{t['wer']:.2f} % ({t['how']})"
        lines += ["", f"### Ratio {key}: dev target {tw}", ""]
        lines += ["|" + "|".join(head) + "|", "|" + "---|" * len(head)]
        for row in comp["systems"]:
            c = row["cost_to_target"]
            params = "-" if row["params"] is None else f"{row['params'] / 1e6:.2f} M"
            epochs = str(row["epochs"]) if not row["encrl_epochs"] else f"{row['encrl_epochs']} + {row['epochs']}"
            budget = BUDGET_NAME.match(row["name"])
            name = row["name"] + (" (EncRL-epoch budget)" if budget else " (ablation)" if row["role"] == "ablation"
                                  else "")
            if row["loss"]:
                name += f" [{row['loss']}]"
            boot = "(reference point)"
            if row["role"] != "main":
                boot = _fmt_boot(((row.get("bootstrap_vs_encrl") or {}).get(boot_set)) if boot_set else None)
            if t["wer"] is None:
                wall = "-"  # no target yet (no per-epoch WERs of scratch): nothing to reach
            elif c["reached"]:
                wall = f"{human_duration(c['wall_seconds'])} (ep. {c['epoch']}/{c['epochs_total']})"
            else:
                wall = "not reached"
            vs_s = row["speedup_vs_scratch"]
            fast_txt = fmt_fastest(row.get("speedup_vs_fastest_baseline"))
            cells = [name, row["kind"], row["init"] or "-", params, epochs]
            cells += [_fmt_stats(row["wer"].get(d)) for d in test_sets]
            cells += [boot, wall, _fmt_updates(c["updates"]),
                      f"{fmt_x(vs_s['wall_seconds'])} / {fmt_x(vs_s['updates'])}", fast_txt]
            lines.append("|" + "|".join(cells) + "|")
        lines += budget_lines(comp, target_set)
    refs = [System.from_dict(s) for s in bench["systems"] if s["kind"] == "reference"]
    for r in refs:
        wers = ", ".join(f"{d} {_fmt_wer(r.wer.get(d))}" for d in test_sets)
        lines += ["", f"Reference `{r.name}`: {'-' if r.params is None else f'{r.params / 1e6:.2f} M'} params, "
                      f"{r.epochs} epochs, WER {wers}. Reference-target cache: "
                      f"{human_duration(bench.get('reference_cache_seconds') or 0.0)}, shared by "
                      f"{bench.get('cache_users', 0)} KD/EncRL runs."]
    lines += bar_lines(bench, boot_set)
    lines += valid_cer_lines(bench.get("comparison_valid_cer") or {})
    if not bench.get("comparison"):
        lines += ["", "No comparison: no student with per-epoch WERs on the target set yet."]
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
    """Mean (over seeds) WER on ``dset`` against the mean cumulative training wall time, one line per
    system; a KD / EncRL system's line starts after its cache share and EncRL epochs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"reference": "black", "scratch": "tab:red", "pruned": "tab:orange", "control": "tab:green",
              "kd": "tab:purple", "encrl": "tab:blue"}
    markers = {0.0: "D", 0.5: "o", 0.667: "s", 0.833: "^"}
    fig, ax = plt.subplots(figsize=(9, 5.5))
    systems = [System.from_dict(d) for d in bench["systems"]]
    n_users = bench.get("cache_users") or 0
    mains = {c.get("main_encrl") for c in (bench.get("comparison") or {}).values()}
    groups: Dict[str, List[System]] = {}
    for s in systems:
        groups.setdefault(s.group or s.name, []).append(s)
    n = 0
    for name, runs in groups.items():
        first = runs[0]
        wers = mean_curve([r.wer_curve(dset) for r in runs])
        walls = mean_curve([run_costs(r, n_users)["wall_seconds"] for r in runs])
        pts = [(x / 60.0, w) for x, w in zip(walls, wers) if x is not None and w is not None]
        if not pts:
            continue
        ablation = first.kind == "encrl" and name not in mains
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=markers.get(first.ratio, "x"), markersize=4,
                color=colors.get(first.kind, "gray"), linestyle=":" if ablation else "-",
                alpha=0.5 + 0.5 * (1 - (first.ratio or 0.0)),
                label=f"{name} ({first.kind}, ratio {_fmt_ratio(first.ratio)}, n={len(runs)})")
        n += 1
    for comp in (bench.get("comparison") or {}).values():
        if comp["target"]["wer"] is not None:
            ax.axhline(comp["target"]["wer"], color="gray", linewidth=0.6, linestyle="--")
    ax.set_xlabel("training wall time (minutes; KD/EncRL after their cache share and EncRL epochs), mean over seeds")
    ax.set_ylabel(f"WER on {dset} (%), mean over seeds")
    ax.set_title("WER vs training wall time (CTC greedy, every epoch; dashed: the dev targets)")
    ax.grid(True, alpha=0.3)
    if n:
        ax.legend(fontsize=6)
    else:
        ax.text(0.5, 0.5, "no per-epoch WERs yet (python -m espnet_lw.bin.benchmark epochs)",
                ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return n > 0


def keep_foreign_keys(path: Path, bench: dict) -> dict:
    """``bench`` plus the top-level keys of an existing ``path`` that other tools own (e.g. ``device``);
    keys this report wrote in earlier versions (:data:`RETIRED_KEYS`) are dropped."""
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return bench
    if not isinstance(old, dict):
        return bench
    return {**bench, **{k: v for k, v in old.items() if k not in bench and k not in RETIRED_KEYS}}


def _tsv(rows: Sequence[Sequence[object]]) -> str:
    return "".join("\t".join("" if v is None else str(v) for v in row) + "\n" for row in rows)


def copy_logs(dest: Path, expdir: Path, dirs: Sequence[SystemDir], bench: dict, errors: Dict[str, dict]) -> None:
    """The logs behind every number, small, into ``dest`` (emptied first: it is the report's own):

    ``<run>.train.log`` / ``<run>.encrl.train.log`` (the epoch-summary lines only), ``<run>.epochs.tsv``
    (per epoch: wall seconds, updates, cumulative cost with what was paid before, WER per epoch set, the
    trainer's validation CER),
    ``<run>.student.json``, ``<set>.utt_errors.tsv`` (per utterance: reference words and each run's
    word errors: what the bootstrap resamples), ``stage_times.tsv``, ``provenance.json``.
    """
    if dest.is_dir():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    by_name = {s["name"]: System.from_dict(s) for s in bench["systems"]}
    n_users = bench.get("cache_users") or 0
    for d in dirs:
        s = by_name[d.name]
        lines = epoch_summary_lines(d.exp / "train.log")
        if lines:
            (dest / f"{d.name}.train.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
        enc = epoch_summary_lines(d.exp / "encrl" / "train.log")
        if enc:
            (dest / f"{d.name}.encrl.train.log").write_text("\n".join(enc) + "\n", encoding="utf-8")
        student = read_student_json(d.exp)
        if student is not None:
            (dest / f"{d.name}.student.json").write_text(json.dumps(student, indent=1) + "\n", encoding="utf-8")
        sets = sorted(s.wer_per_epoch)
        costs = run_costs(s, n_users) if s.kind != "reference" else None
        head = ["epoch", "wall_seconds", "updates"] + ([f"cum_{m}" for m in MEASURES] if costs else [])
        rows = [head + [f"wer_{x}" for x in sets] + ["valid_cer"]]
        for e in range(1, len(s.seconds_per_epoch) + 1):
            row = [e, s.seconds_per_epoch[e - 1],
                   s.updates_per_epoch[e - 1] if e - 1 < len(s.updates_per_epoch) else None]
            if costs:
                row += [None if costs[m][e - 1] is None else round(costs[m][e - 1], 3) for m in MEASURES]
            row += [s.wer_curve(x)[e - 1] if e - 1 < len(s.wer_curve(x)) else None for x in sets]
            row.append(s.valid_cer_per_epoch[e - 1] if e - 1 < len(s.valid_cer_per_epoch) else None)
            rows.append(row)
        (dest / f"{d.name}.epochs.tsv").write_text(_tsv(rows), encoding="utf-8")
    for dset in bench.get("test_sets") or []:
        names = [n for n in sorted(errors) if dset in errors[n]]
        if not names:
            continue
        utts = sorted(set().union(*(errors[n][dset] for n in names)))
        rows = [["utterance", "ref_words"] + names]
        for u in utts:
            nref = next((errors[n][dset][u][1] for n in names if u in errors[n][dset]), None)
            rows.append([u, nref] + [errors[n][dset].get(u, (None,))[0] for n in names])
        (dest / f"{dset}.utt_errors.tsv").write_text(_tsv(rows), encoding="utf-8")
    for src in (expdir / "stage_times.tsv", expdir / "benchmark" / "provenance.json"):
        if src.is_file():
            shutil.copyfile(src, dest / src.name)


def write_report(recipe: Path, expdir: Path, test_sets: Sequence[str], epoch_sets: Sequence[str],
                 command: Optional[str], decode: Optional[str] = None, ref_exp: Optional[Path] = None,
                 results: str = "RESULTS.md", env: Optional[dict] = None, provenance: Optional[dict] = None,
                 dumpdir: Optional[Path] = None, logs: Optional[str] = "logs/benchmark") -> dict:
    """Write benchmark.json, the plot, the RESULTS.md section and the logs (copies next to RESULTS.md).

    ``provenance``: from :func:`espnet_lw.benchmark.provenance.check_report` (``None``: not checked, and
    the section says so). ``logs``: the logs dir relative to RESULTS.md's dir (``None``: none written).
    """
    bdir = expdir / "benchmark"
    if command is None and provenance:
        command = provenance.get("command")
    if command is None and (bdir / "benchmark.json").is_file():
        command = json.loads((bdir / "benchmark.json").read_text(encoding="utf-8")).get("command")
    bench = build_benchmark(expdir, test_sets, epoch_sets, command, decode, ref_exp, env, provenance,
                            base=recipe, dumpdir=dumpdir, with_errors=True)
    errors = bench.pop("_utt_errors")
    results_path = recipe / results
    for path in (bdir / "benchmark.json", results_path.parent / "benchmark.json"):
        atomic_write_text(path, json.dumps(keep_foreign_keys(path, bench), indent=1) + "\n")
    plot = bdir / "wer_vs_time.png"
    plot_wer_vs_time(bench, plot, epoch_sets[0] if epoch_sets else None)
    plot_copy = results_path.parent / "benchmark_wer_vs_time.png"
    shutil.copyfile(plot, plot_copy)
    if logs:
        copy_logs(results_path.parent / logs, expdir, discover_systems(expdir, ref_exp), bench, errors)
    old = results_path.read_text(encoding="utf-8") if results_path.is_file() else ""
    atomic_write_text(results_path, replace_section(old, render_markdown(bench, test_sets, plot_copy.name)))
    logging.info("wrote %s, %s, %s and the section of %s", bdir / "benchmark.json", plot, plot_copy, results_path)
    return bench
