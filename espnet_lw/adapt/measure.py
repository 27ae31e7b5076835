"""The field-adaptation measurement: trained students adapted two ways, a minutes sweep, one command.

``python -m espnet_lw.bin.adapt_benchmark run`` (``local/adapt_benchmark.sh`` in a recipe) runs, through
``./run.sh`` (so every step is the driver's resumable stage), in this order:

1. **way (a)**: stage 16 of every ``--students`` model on ``--adapt_set`` with ``--adapt_config``;
2. the ``--sweep_student`` again without replay (``--noreplay_config``) and with only M minutes of the
   adapt set for every M of ``--minutes`` (configs derived from ``--adapt_config``, written to
   ``<expdir>/adapt_benchmark/conf/adapt_min<M>.yaml``);
3. **way (b)**: stage 16 of the reference, then every student derived again from the adapted reference
   (``exp/adapt_<tag>/reference``) by stages 11-13 with the student's own config, mode and seed (read
   from its ``conf/student.json``), tag ``<student>_adaptref``.

``tune`` chooses the adaptation config without looking at ``field_test``: it splits the adapt set by
speaker (``data/<adapt set>_tune_adapt`` / ``_tune_test``), adapts the sweep student on the first part
with each candidate config and scores the second part and ``dev`` (forgetting); the table goes to
``<expdir>/adapt_benchmark/tune.md`` and into the report.

``report`` collects what those runs left (``adapt_results.json`` of every adaptation, the ESPnet training
logs, stage 13's scores) into ``<expdir>/adapt_benchmark/adapt_benchmark.json``, the ``adapt`` section of
RESULTS.md (before / after tables, times of both ways, the issue's bounds), a plot of the sweep student's
``field_test`` WER against minutes of field audio, and copies of the small logs behind the numbers
(``logs/adapt/``). Times are ESPnet's own per-epoch train + valid times (:mod:`espnet_lw.benchmark.timing`),
which count a resumed training in full; decoding is left out of both ways.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml

from espnet_lw.adapt.report import error_rate, relative_change
from espnet_lw.adapt.report import fmt_number as _num
from espnet_lw.adapt.report import fmt_signed as _signed
from espnet_lw.benchmark.device_report import replace_section
from espnet_lw.benchmark.provenance import git_state, machine, now
from espnet_lw.benchmark.systems import cache_info_seconds, read_student_json
from espnet_lw.benchmark.timing import train_seconds
from espnet_lw.utils.cli import UserError
from espnet_lw.utils.io import atomic_write_text, load_yaml

BEGIN_MARK, END_MARK = "<!-- adapt:begin -->", "<!-- adapt:end -->"
PLOT_NAME = "adapt_field_wer_vs_minutes.png"
#: what the measurement itself writes into the recipe dir (allowed to differ from the commit)
RECIPE_OUTPUTS = ("RESULTS.md", "adapt_benchmark.json", PLOT_NAME, "logs/adapt/")
DECODE_TAG = "decode_ctc_greedy_asr_model_valid.loss.ave"
#: issue 12's bounds
FIELD_DROP_MIN, FIELD_MINUTES_MAX, TRAIN_SECONDS_MAX, TEST_RISE_MAX = 40.0, 10.0, 300.0, 5.0


def adapt_tag(model_dir: str, config: str, adapt_set: str) -> str:
    """The driver's default ``--adapt_tag`` (lw.sh stage 16): ``<model>[_<config suffix>]_<set>``."""
    suffix = Path(config).name.removesuffix(".yaml").removeprefix("adapt").removeprefix("_")
    model = Path(model_dir).name.removeprefix("asr_")
    return f"{model}_{suffix}_{adapt_set}" if suffix else f"{model}_{adapt_set}"


def minutes_label(m: float) -> str:
    return f"{m:g}"


def minutes_config_path(out_dir: Path, minutes: float) -> Path:
    """Where :func:`write_minutes_configs` puts the config of ``minutes``."""
    return out_dir / f"adapt_min{minutes_label(minutes)}.yaml"


def write_minutes_configs(base: Path, minutes: Sequence[float], out_dir: Path) -> Dict[float, Path]:
    """``adapt_min<M>.yaml`` for every M: ``base`` with ``minutes: M`` (nothing else changed)."""
    conf = load_yaml(base, "adaptation config")
    out: Dict[float, Path] = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    for m in minutes:
        if m <= 0:
            raise UserError(f"--minutes must be positive, got {m}")
        path = minutes_config_path(out_dir, m)
        text = (f"# {base} with only {m:g} minutes of the adapt set (written by the adaptation measurement)\n"
                + yaml.safe_dump({**conf, "minutes": float(m)}, sort_keys=False))
        atomic_write_text(path, text)
        out[m] = path
    return out


def student_identity(model_dir: Path) -> dict:
    """A student's ``conf/student.json`` (its config, mode, seed), needed to derive it again in way (b)."""
    ident = read_student_json(model_dir)
    if ident is None:
        raise UserError("not a student exp dir (no readable conf/student.json)", str(model_dir),
                        "pass the exp dirs of students trained by stage 11 (--students)")
    return ident


def plan(expdir: str, students: Sequence[str], sweep: Optional[str], reference: Optional[str],
         adapt_set: str, test_sets: str, adapt_config: str, noreplay_config: Optional[str],
         minute_configs: Dict[float, Path], ways: Sequence[str], run_args: Sequence[str]) -> List[List[str]]:
    """The ``./run.sh`` command lines of the measurement, in order (see the module doc)."""
    def stage16(model: str, config: str) -> List[str]:
        return ["./run.sh", "--stage", "16", "--stop_stage", "16", "--expdir", expdir, "--adapt_set", adapt_set,
                "--adapt_config", config, "--adapt_model", f"{expdir}/{model}", "--adapt_test_sets", test_sets,
                *run_args]

    cmds: List[List[str]] = []
    if "a" in ways:
        cmds += [stage16(s, adapt_config) for s in students]
        if sweep:
            if noreplay_config:
                cmds.append(stage16(sweep, noreplay_config))
            cmds += [stage16(sweep, str(p)) for p in minute_configs.values()]
    if "b" in ways and reference:
        cmds.append(stage16(reference, adapt_config))
        ref_exp = f"{expdir}/adapt_{adapt_tag(reference, adapt_config, adapt_set)}/reference"
        for s in students:
            ident = student_identity(Path(expdir) / s)
            cmds.append(["./run.sh", "--stage", "11", "--stop_stage", "13", "--expdir", expdir,
                         "--ref_exp", ref_exp, "--student_config", f"conf/{ident['student_config']}",
                         "--student_mode", ident["mode"], "--student_seed", str(ident["seed"]),
                         "--student_tag", f"{s.removeprefix('asr_')}_adaptref", "--test_sets", test_sets,
                         *run_args])
    return cmds


def find_reference(expdir: Path) -> str:
    """The one trained reference of ``expdir`` (``asr_reference_*``)."""
    refs = sorted(p.parent.name for p in expdir.glob("asr_reference_*/.done.stage11") if ".old." not in str(p))
    if len(refs) != 1:
        raise UserError(f"expected one trained reference exp/asr_reference_*, found {refs or 'none'}",
                        str(expdir), "pass --reference")
    return refs[0]


def check_tree(recipe: Path, allow_dirty: bool, what: str) -> dict:
    """The checkout's state; a dirty tree is refused unless ``allow_dirty`` (then recorded)."""
    state = git_state(recipe, RECIPE_OUTPUTS)
    if not state["clean"] and not allow_dirty:
        raise UserError(f"refusing to {what}: the checkout has changes: " + "; ".join(state["dirty"][:5]),
                        fix="commit (or discard) them and run again; --allow_dirty runs anyway and marks the report")
    return {"date": now(), "commit": state["commit"], "clean": state["clean"], "dirty": state["dirty"],
            "allow_dirty": allow_dirty, "machine": machine()}


def run_commands(cmds: Sequence[Sequence[str]]) -> None:
    for c in cmds:
        logging.info("running: %s", shlex.join(c))
        rc = subprocess.call(list(c))
        if rc != 0:
            raise UserError(f"'{shlex.join(c)}' failed (exit {rc})",
                            fix="see its log above; running the measurement again resumes "
                                "(finished stages are skipped)")


# ------------------------------------------------------------------------------------------------ tuning
def tune_sets(adapt_set: str) -> tuple:
    """The speaker split of the adapt set that tuning uses: (its name, the adapt part, the test part)."""
    name = f"{adapt_set}_tune"
    return name, f"{name}_adapt", f"{name}_test"


def make_tune_split(adapt_set: str, share: float, seed: int = 0) -> None:
    """``data/<adapt set>_tune{,_adapt,_test}`` from ``data/<adapt set>``, split by speaker (once)."""
    from espnet_lw.adapt.field_data import import_field_data

    name, part_a, part_t = tune_sets(adapt_set)
    if (Path("data") / part_a).is_dir() and (Path("data") / part_t).is_dir():
        logging.info("data/%s and data/%s exist: reused", part_a, part_t)
        return
    import_field_data(Path("data") / name, kaldi_dir=Path("data") / adapt_set, test_share=share, seed=seed)


def tune_plan(expdir: str, student: str, adapt_set: str, configs: Sequence[str],
              run_args: Sequence[str]) -> List[List[str]]:
    """Stage 16 of ``student`` on the tuning split with each config, scored on its held-out speakers and dev."""
    _, part_a, part_t = tune_sets(adapt_set)
    return [["./run.sh", "--stage", "16", "--stop_stage", "16", "--expdir", expdir, "--adapt_set", part_a,
             "--adapt_config", c, "--adapt_model", f"{expdir}/{student}", "--adapt_test_sets", f"{part_t} dev",
             *run_args] for c in configs]


def render_tune(expdir: Path, student: str, adapt_set: str, configs: Sequence[str], command: Optional[str]) -> str:
    """The tuning table: per config, the held-out speakers' WER after adaptation and dev before / after."""
    _, part_a, part_t = tune_sets(adapt_set)
    lines = [f"Tuning of the adaptation config on `{adapt_set}` alone (never `field_test`): `{student}` adapted on "
             f"`{part_a}` (a speaker split of it), scored on its other speakers (`{part_t}`) and on `dev` "
             "(forgetting).", ""]
    if command:
        lines += ["```sh", command, "```", ""]
    lines += ["|config|train s|field min|held-out speakers WER after|dev before|dev after|dev rel. %|",
              "|---|---|---|---|---|---|---|"]
    best = None
    for c in configs:
        row = adaptation_row(expdir, student, c, part_a, [part_t, "dev"])
        if row is None:
            lines.append(f"|{c}|not run||||||")
            continue
        held, dev = row["sets"][part_t], row["sets"]["dev"]
        lines.append(f"|{c}|{_num(row['train_seconds'], 0)}|{_num(row['field_minutes'])}|{_num(held['after'])}|"
                     f"{_num(dev['before'])}|{_num(dev['after'])}|{_signed(dev['rel'])}|")
        if held["after"] is not None and (best is None or held["after"] < best[1]):
            best = (c, held["after"])
    if best:
        lines += ["", f"Lowest held-out WER: `{best[0]}` ({best[1]:.1f})."]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ report
def _wer(model_dir: Path, dset: str) -> Optional[float]:
    return error_rate(model_dir / DECODE_TAG, dset)


def adaptation_row(expdir: Path, model: str, config: str, adapt_set: str, sets: Sequence[str]) -> Optional[dict]:
    """One adaptation's before / after WER per set, its training seconds and field minutes (None: not run)."""
    tag = adapt_tag(model, config, adapt_set)
    f = expdir / f"adapt_{tag}" / "adapt_results.json"
    if not f.is_file():
        return None
    res = json.loads(f.read_text(encoding="utf-8"))
    by_set = {r["set"]: r for r in res.get("rows", [])}
    data = res.get("data") or {}
    row = {"model": model, "config": Path(config).name, "adapt_dir": f"adapt_{tag}",
           "train_seconds": res.get("train_seconds"),
           "field_minutes": (data.get("field_seconds") or 0) / 60 or None,
           "field_utts": data.get("field_utts"), "replay_utts": data.get("replay_utts"), "sets": {}}
    for dset in sets:
        r = by_set.get(dset, {})
        row["sets"][dset] = {"before": r.get("wer_before"), "after": r.get("wer_after"),
                             "rel": relative_change(r.get("wer_before"), r.get("wer_after"))}
    return row


def derived_row(expdir: Path, student: str, sets: Sequence[str]) -> Optional[dict]:
    """A way-(b) student: its WER per set and its training seconds (EncRL + fine-tune / its one training)."""
    d = expdir / f"asr_{student.removeprefix('asr_')}_adaptref"
    if not (d / ".done.stage11").is_file():
        return None
    secs = [s for s in (train_seconds(d / "encrl" / "train.log"), train_seconds(d / "train.log")) if s is not None]
    return {"model": d.name, "from": student, "train_seconds": sum(secs) if secs else None,
            "sets": {dset: {"wer": _wer(d, dset), "original": _wer(expdir / student, dset)} for dset in sets}}


def _ratio(expdir: Path, model: str) -> Optional[float]:
    return (read_student_json(expdir / model) or {}).get("ratio")


def collect(expdir: Path, students: Sequence[str], sweep: Optional[str], reference: Optional[str],
            adapt_set: str, sets: Sequence[str], adapt_config: str, noreplay_config: Optional[str],
            minute_configs: Dict[float, Path]) -> dict:
    """Everything the report shows, from the exp dirs as they are (missing runs: None / absent)."""
    way_a = {s: adaptation_row(expdir, s, adapt_config, adapt_set, sets) for s in students}
    sweep_rows = []
    if sweep:
        for m, path in sorted(minute_configs.items()):
            sweep_rows.append({"minutes_asked": m, **(adaptation_row(expdir, sweep, str(path), adapt_set, sets) or {})})
        if way_a.get(sweep):
            sweep_rows.append({"minutes_asked": None, **way_a[sweep]})
    noreplay = adaptation_row(expdir, sweep, noreplay_config, adapt_set, sets) if sweep and noreplay_config else None
    ref_row = adaptation_row(expdir, reference, adapt_config, adapt_set, sets) if reference else None
    way_b = {s: derived_row(expdir, s, sets) for s in students}
    targets = cache_info_seconds(expdir / ref_row["adapt_dir"] / "reference") if ref_row else None
    tune_md = expdir / "adapt_benchmark" / "tune.md"
    return {"students": {s: {"ratio": _ratio(expdir, s)} for s in students}, "sweep_student": sweep,
            "tuning": tune_md.read_text(encoding="utf-8") if tune_md.is_file() else None,
            "reference": reference, "adapt_set": adapt_set, "sets": list(sets), "way_a": way_a,
            "sweep": sweep_rows, "noreplay": noreplay, "reference_adaptation": ref_row,
            "reference_targets_seconds": targets, "way_b": way_b}


def bounds(m: dict) -> List[str]:
    """Issue 12's bounds on the sweep student, met or not (one line each)."""
    out = []
    s = m.get("sweep_student")
    a = (m.get("way_a") or {}).get(s) if s else None
    if a:
        ft, te = a["sets"].get("field_test", {}), a["sets"].get("test", {})
        drop = -ft["rel"] if ft.get("rel") is not None else None
        ok = (drop is not None and drop >= FIELD_DROP_MIN and (a["field_minutes"] or 0) <= FIELD_MINUTES_MAX
              and (a["train_seconds"] or 1e9) <= TRAIN_SECONDS_MAX)
        out.append(f"- field_test WER of {s} falls by >= {FIELD_DROP_MIN:.0f} % relative with <= "
                   f"{FIELD_MINUTES_MAX:.0f} min of field audio and <= {TRAIN_SECONDS_MAX / 60:.0f} min of training: "
                   f"{'met' if ok else '**not met**'} ({_num(drop)} % with {_num(a['field_minutes'])} min, "
                   f"{_num(a['train_seconds'], 0)} s)")
        rise = te.get("rel")
        out.append(f"- with replay, test WER rises by <= {TEST_RISE_MAX:.0f} % relative: "
                   f"{'met' if rise is not None and rise <= TEST_RISE_MAX else '**not met**'} ({_num(rise)} %)")
    nr = m.get("noreplay")
    if nr:
        out.append(f"- without replay (reported, no bound): test {_num(nr['sets'].get('test', {}).get('rel'))} %, "
                   f"field_test {_num(nr['sets'].get('field_test', {}).get('rel'))} %")
    return out


def render(m: dict, command: Optional[str], provenance: dict, plot: bool) -> str:
    sets = m["sets"]
    lines = [BEGIN_MARK, "## Field adaptation: two ways to serve several devices, and how much field audio", ""]
    if command:
        lines += ["```sh", command, "```", ""]
    run = provenance.get("run") or {}
    tree = "clean tree" if run.get("clean") else "dirty tree: " + "; ".join(run.get("dirty") or [])
    cpu = run.get("machine", {}).get("cpu")
    lines.append(f"Run at commit `{run.get('commit')}` ({tree}), {run.get('date')}, {cpu}; "
                 f"adapt set `{m['adapt_set']}`. Times: ESPnet's train + valid seconds of each training "
                 "(decoding left out). WER: CTC greedy, sclite.")
    lines += ["", "### Way (a): adapt each student on the field data", "",
              "|model|ratio|field min|train s|" + "|".join(f"{d} before|{d} after|{d} rel. %" for d in sets) + "|",
              "|---|---|---|---|" + "---|" * (3 * len(sets))]
    total_a = 0.0
    for s, row in m["way_a"].items():
        ratio = m["students"][s]["ratio"]
        if not row:
            lines.append(f"|{s}|{_num(ratio, 3)}|not run|" + "|" * (3 * len(sets)))
            continue
        total_a += row["train_seconds"] or 0
        cells = [f"{_num(row['sets'][d]['before'])}|{_num(row['sets'][d]['after'])}|{_signed(row['sets'][d]['rel'])}"
                 for d in sets]
        lines.append(f"|{s}|{_num(ratio, 3)}|{_num(row['field_minutes'])}|{_num(row['train_seconds'], 0)}|"
                     + "|".join(cells) + "|")
    ref = m.get("reference_adaptation")
    lines += ["", "### Way (b): adapt the reference once, derive the students from it (EncRL + fine-tune)", ""]
    if ref:
        cells = ", ".join(f"{d} {_num(ref['sets'][d]['before'])} -> {_num(ref['sets'][d]['after'])}" for d in sets)
        lines.append(f"Reference `{m['reference']}` adapted in {_num(ref['train_seconds'], 0)} s: {cells}.")
        lines.append("")
    lines += ["|student|train s|" + "|".join(f"{d}|{d} way (a)" for d in sets) + "|",
              "|---|---|" + "---|" * (2 * len(sets))]
    total_b = ((ref or {}).get("train_seconds") or 0.0) + (m.get("reference_targets_seconds") or 0.0)
    for s, row in m["way_b"].items():
        if not row:
            lines.append(f"|{s}_adaptref|not run|" + "|" * (2 * len(sets)))
            continue
        total_b += row["train_seconds"] or 0
        a = m["way_a"].get(s)
        cells = [f"{_num(row['sets'][d]['wer'])}|{_num(a['sets'][d]['after']) if a else '-'}" for d in sets]
        lines.append(f"|{row['model']}|{_num(row['train_seconds'], 0)}|" + "|".join(cells) + "|")
    lines += ["", f"Training time to serve these {len(m['way_a'])} devices from trained students: way (a) "
              f"{_num(total_a, 0)} s (one adaptation each), way (b) {_num(total_b, 0)} s (the reference's "
              f"adaptation, its targets pass of {_num(m.get('reference_targets_seconds'), 0)} s, every student "
              "trained again)."]
    if m["sweep"]:
        lines += ["", f"### Minutes of field audio ({m['sweep_student']}, replay as in the main config)", "",
                  "|minutes asked|minutes used|train s|" + "|".join(f"{d} after|{d} rel. %" for d in sets) + "|",
                  "|---|---|---|" + "---|" * (2 * len(sets))]
        for r in m["sweep"]:
            asked = "all" if r["minutes_asked"] is None else f"{r['minutes_asked']:g}"
            if "sets" not in r:
                lines.append(f"|{asked}|not run||" + "|" * (2 * len(sets)))
                continue
            cells = [f"{_num(r['sets'][d]['after'])}|{_signed(r['sets'][d]['rel'])}" for d in sets]
            lines.append(f"|{asked}|{_num(r['field_minutes'])}|{_num(r['train_seconds'], 0)}|" + "|".join(cells) + "|")
    nr = m.get("noreplay")
    if nr:
        cells = ", ".join(f"{d} {_num(nr['sets'][d]['before'])} -> {_num(nr['sets'][d]['after'])} "
                          f"({_signed(nr['sets'][d]['rel'])} %)" for d in sets)
        lines += ["", f"Without replay (`{nr['config']}`, {m['sweep_student']}): {cells}."]
    if plot:
        lines += ["", f"![field_test WER against minutes of field audio]({PLOT_NAME})"]
    if m.get("tuning"):
        lines += ["", "### How the adaptation config was chosen", "", m["tuning"].rstrip("\n")]
    b = bounds(m)
    if b:
        lines += ["", "Issue 12's bounds:", "", *b]
    lines += ["", "Logs behind these numbers: `logs/adapt/` (each adaptation's `adapt_results.md`, its ESPnet "
              "epoch lines, the way-(b) students' epoch lines).", END_MARK]
    return "\n".join(lines) + "\n"


def plot_minutes(m: dict, out: Path) -> bool:
    """field_test WER of the sweep student against minutes of field audio (0: before adaptation)."""
    pts = sorted((r["field_minutes"], r["sets"]["field_test"]["after"]) for r in m["sweep"]
                 if r.get("sets", {}).get("field_test", {}).get("after") is not None and r.get("field_minutes"))
    if not pts:
        return False
    before = next((r["sets"]["field_test"]["before"] for r in m["sweep"] if r.get("sets")), None)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    xs = ([0.0] if before is not None else []) + [p[0] for p in pts]
    ys = ([before] if before is not None else []) + [p[1] for p in pts]
    ax.plot(xs, ys, marker="o", label=f"{m['sweep_student']} (replay)")
    nr = m.get("noreplay")
    if nr and nr["sets"].get("field_test", {}).get("after") is not None and nr.get("field_minutes"):
        ax.plot([nr["field_minutes"]], [nr["sets"]["field_test"]["after"]], marker="s", linestyle="none",
                label="no replay")
    ax.set_xlabel("minutes of field audio used for adaptation")
    ax.set_ylabel("field_test WER (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)
    return True


def copy_logs(dest: Path, expdir: Path, m: dict) -> None:
    """The small files behind the numbers: adapt_results.md/.json and the epoch lines of every training."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    rows = [*m["way_a"].values(), *m["sweep"], m.get("noreplay"), m.get("reference_adaptation")]
    dirs = [r["adapt_dir"] for r in rows if r and r.get("adapt_dir")]
    dirs += [r["model"] for r in m["way_b"].values() if r]
    for name in dict.fromkeys(dirs):
        src = expdir / name
        out = dest / name
        out.mkdir(parents=True, exist_ok=True)
        for f in ("adapt_results.md", "adapt_results.json", "adapt.json", "run_command.txt"):
            if (src / f).is_file():
                shutil.copy2(src / f, out / f)
        for log in (src / "train.log", src / "encrl" / "train.log"):
            if log.is_file():
                lines = [ln for ln in log.read_text(encoding="utf-8", errors="replace").splitlines()
                         if "epoch results" in ln]
                rel = log.relative_to(src).as_posix().replace("/", "_")
                atomic_write_text(out / f"{rel}.epochs.txt", "\n".join(lines) + "\n")


def write_report(recipe: Path, expdir: Path, m: dict, command: Optional[str], provenance: dict) -> str:
    """adapt_benchmark.json, the plot, logs/adapt/ and the RESULTS.md section; returns the section."""
    payload = {"measurement": m, "command": command, "provenance": provenance}
    text = json.dumps(payload, indent=1) + "\n"
    atomic_write_text(expdir / "adapt_benchmark" / "adapt_benchmark.json", text)
    atomic_write_text(recipe / "adapt_benchmark.json", text)
    plot = plot_minutes(m, recipe / PLOT_NAME)
    copy_logs(recipe / "logs" / "adapt", expdir, m)
    section = render(m, command, provenance, plot)
    results = recipe / "RESULTS.md"
    old = results.read_text(encoding="utf-8") if results.is_file() else ""
    atomic_write_text(results, replace_section(old, section, BEGIN_MARK, END_MARK))
    return section
