"""The field-adaptation measurement of a recipe whose students are trained: way (a) (adapt each student),
way (b) (adapt the reference once, derive the students from it), no replay, a minutes sweep; report.

Run from a recipe dir (``local/adapt_benchmark.sh`` wraps ``run``)::

    # every adaptation and every way-(b) student through ./run.sh (finished stages skipped), then the report
    python -m espnet_lw.bin.adapt_benchmark run --recipe_dir . \\
        [--students "asr_student_r50_encrl_seed1 asr_student_r67_encrl_seed1 asr_student_r83_encrl_seed1"] \\
        [--sweep_student asr_student_r67_encrl_seed1] [--minutes "2.5 5"] [--ways "a b"] \\
        [--adapt_set field_adapt] [--adapt_test_sets "field_test test"] [--allow_dirty] [-- <run.sh options>]
    # adapt_benchmark.json, the "adapt" section of RESULTS.md, the plot and logs/adapt/, from exp/ as it is
    python -m espnet_lw.bin.adapt_benchmark report --recipe_dir . [same selection options]
    # choose the adaptation config on the adapt set alone (a speaker split of it; never field_test)
    python -m espnet_lw.bin.adapt_benchmark tune --recipe_dir . --configs "conf/adapt.yaml conf/adapt_x.yaml"

The students must exist (stage 11, e.g. from local/benchmark.sh, whose EncRL seed-1 students are the
defaults). What runs in which order and what the report shows: :mod:`espnet_lw.adapt.measure`.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import List, Optional

from espnet_lw.adapt import measure
from espnet_lw.utils.cli import UserError, run_main, setup_logging, split_passthrough
from espnet_lw.utils.io import atomic_write_text

DEFAULT_STUDENTS = " ".join(f"asr_student_r{r}_encrl_seed1" for r in (50, 67, 83))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe_dir", default=".", help="the recipe dir (run.sh, exp/, RESULTS.md)")
    p.add_argument("--expdir", default="exp", help="exp dir, relative to the recipe dir")
    p.add_argument("--students", default=DEFAULT_STUDENTS, help="trained student exp dirs (names under --expdir)")
    p.add_argument("--sweep_student", default="asr_student_r67_encrl_seed1",
                   help="the student of the no-replay run and the minutes sweep ('none': neither)")
    p.add_argument("--reference", default="",
                   help="the reference exp dir of way (b) (default: the one asr_reference_*)")
    p.add_argument("--ways", default="a b", help="'a', 'b' or both")
    p.add_argument("--minutes", default="2.5 5", help="minutes of the adapt set for the sweep (all of it: way (a))")
    p.add_argument("--adapt_set", default="field_adapt", help="the set under data/ to adapt on")
    p.add_argument("--adapt_test_sets", default="field_test test", help="sets scored before and after")
    p.add_argument("--adapt_config", default="conf/adapt.yaml", help="the adaptation config of every way")
    p.add_argument("--noreplay_config", default="conf/adapt_noreplay.yaml", help="the no-replay config ('none': skip)")
    p.add_argument("--allow_dirty", action="store_true", help="run / report on a dirty tree (marked in the report)")
    p.add_argument("--command", default=None, help="the command to record (default: this one)")
    p.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter
    r = sub.add_parser("run", formatter_class=fmt, help="run every adaptation and way-(b) student, then report",
                       description="Options after '--' go to every ./run.sh call.")
    _common(r)
    r.add_argument("--dry_run", action="store_true", help="print the ./run.sh commands and stop")
    rep = sub.add_parser("report", formatter_class=fmt, help="write the report from the exp dirs as they are")
    _common(rep)
    t = sub.add_parser("tune", formatter_class=fmt, help="compare adaptation configs on a speaker split of the "
                       "adapt set (the sweep student; field_test is not used)",
                       description="Options after '--' go to every ./run.sh call.")
    _common(t)
    t.add_argument("--configs", default="conf/adapt.yaml",
                   help="the candidate adaptation configs (paths or quoted glob patterns, space-separated)")
    t.add_argument("--tune_share", type=float, default=0.34, help="share of the adapt set's speakers held out")
    t.add_argument("--dry_run", action="store_true", help="print the ./run.sh commands and stop")
    return p


class Selection:
    """The options of both subcommands, checked against the recipe dir (the process is in it)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.expdir = Path(args.expdir)
        if not self.expdir.is_dir():
            raise UserError("no exp dir", str(self.expdir.resolve()), "train the students first (local/benchmark.sh)")
        self.students = args.students.split()
        missing = [s for s in self.students if not (self.expdir / s / ".done.stage11").is_file()]
        if missing:
            raise UserError(f"not trained: {', '.join(missing)}", str(self.expdir),
                            "train them (stage 11) or pass --students with trained exp dirs")
        self.sweep = None if args.sweep_student in ("", "none") else args.sweep_student
        if self.sweep and self.sweep not in self.students:
            raise UserError(f"--sweep_student {self.sweep} is not one of --students")
        self.ways = args.ways.split()
        if not self.ways or set(self.ways) - {"a", "b"}:
            raise UserError(f"--ways takes 'a', 'b' or both, got '{args.ways}'")
        self.reference = (args.reference or measure.find_reference(self.expdir)) if "b" in self.ways else None
        try:
            self.minutes = [float(x) for x in args.minutes.split()]
        except ValueError:
            raise UserError(f"--minutes takes numbers, got '{args.minutes}'") from None
        for f in (args.adapt_config, args.noreplay_config):
            if f not in ("", "none") and not Path(f).is_file():
                raise UserError("no such adaptation config", f, "see conf/adapt*.yaml")
        self.adapt_config = args.adapt_config
        self.noreplay = None if args.noreplay_config in ("", "none") else args.noreplay_config
        self.adapt_set, self.test_sets = args.adapt_set, args.adapt_test_sets
        self.conf_dir = self.expdir / "adapt_benchmark" / "conf"
        sweep_minutes = self.minutes if self.sweep and "a" in self.ways else []
        #: the sweep's configs (written by :meth:`write_minute_configs`; report and tune only read them)
        self.minute_configs = {m: measure.minutes_config_path(self.conf_dir, m) for m in sweep_minutes}

    def write_minute_configs(self) -> None:
        if self.minute_configs:
            measure.write_minutes_configs(Path(self.adapt_config), list(self.minute_configs), self.conf_dir)

    def measurement(self) -> dict:
        return measure.collect(self.expdir, self.students, self.sweep, self.reference, self.adapt_set,
                               self.test_sets.split(), self.adapt_config, self.noreplay, self.minute_configs)


def tune(args: argparse.Namespace, sel: Selection, run_args: List[str], command: str) -> None:
    """The ``tune`` subcommand: split, adapt with each config, write <expdir>/adapt_benchmark/tune.md."""
    if not sel.sweep:
        raise UserError("tune adapts --sweep_student: give one")
    # each item is a path or a glob pattern (quoted, so the shell leaves it to us): conf/adapt_tune/*.yaml
    configs = [p for c in args.configs.split() for p in (sorted(glob.glob(c)) or [c])]
    missing = [c for c in configs if not Path(c).is_file()]
    if missing:
        raise UserError(f"no such adaptation config: {', '.join(missing)}", fix="see conf/adapt*.yaml")
    cmds = measure.tune_plan(str(sel.expdir), sel.sweep, sel.adapt_set, configs, run_args)
    if args.dry_run:
        print("\n".join(shlex.join(c) for c in cmds))
        return
    if not 0 < args.tune_share < 1:
        raise UserError(f"--tune_share must be between 0 and 1, got {args.tune_share}")
    measure.make_tune_split(sel.adapt_set, args.tune_share)
    measure.run_commands(cmds)
    text = measure.render_tune(sel.expdir, sel.sweep, sel.adapt_set, configs, command)
    atomic_write_text(sel.expdir / "adapt_benchmark" / "tune.md", text)
    print(text)


def _provenance_file(expdir: Path) -> Path:
    return expdir / "adapt_benchmark" / "provenance.json"


def main(argv: Optional[List[str]] = None) -> None:
    argv, run_args = split_passthrough(argv)
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    command = args.command or shlex.join(["python", "-m", "espnet_lw.bin.adapt_benchmark", *sys.argv[1:]])
    recipe = Path(args.recipe_dir).resolve()
    if not (recipe / "run.sh").is_file():
        raise UserError("no run.sh here: not a recipe dir", str(recipe), "pass --recipe_dir egs2/<corpus>/lw1")
    os.chdir(recipe)
    sel = Selection(args)
    if args.cmd == "tune":
        tune(args, sel, run_args, command)
        return
    prov_file = _provenance_file(sel.expdir)
    record = json.loads(prov_file.read_text(encoding="utf-8")) if prov_file.is_file() else {"runs": []}
    if args.cmd == "run":
        sel.write_minute_configs()
        cmds = measure.plan(str(sel.expdir), sel.students, sel.sweep, sel.reference, sel.adapt_set, sel.test_sets,
                            sel.adapt_config, sel.noreplay, sel.minute_configs, sel.ways, run_args)
        if args.dry_run:
            print("\n".join(shlex.join(c) for c in cmds))
            return
        state = measure.check_tree(recipe, args.allow_dirty, "run the measurement")
        if record["runs"] and record["runs"][0]["commit"] != state["commit"] and not args.allow_dirty:
            raise UserError(f"this exp dir's measurement started at commit {record['runs'][0]['commit']}, the "
                            f"checkout is at {state['commit']}", fix="use that commit, or --allow_dirty")
        record["runs"].append({**state, "command": command})
        prov_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(prov_file, json.dumps(record, indent=1) + "\n")
        measure.run_commands(cmds)
    report_state = measure.check_tree(recipe, args.allow_dirty, "write the report")
    first = record["runs"][0] if record["runs"] else None
    provenance = {"run": first, "runs": len(record["runs"]), "report": report_state}
    section = measure.write_report(recipe, sel.expdir, sel.measurement(),
                                   (first or {}).get("command") or command, provenance)
    logging.info("wrote RESULTS.md (adapt section), adapt_benchmark.json, logs/adapt/")
    print(section)


if __name__ == "__main__":
    run_main(main)
