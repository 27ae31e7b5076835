"""Running a whole benchmark from a recipe dir: train with ``./run.sh``, decode every epoch, report.

What :func:`run_all` trains (each step is ``./run.sh``, so finished stages are skipped):

1. the reference: stages 1-13;
2. for each ratio NN: stages 11-13 with ``--student_config conf/student_rNN.yaml`` and
   ``--student_mode`` scratch, pruned and encrl (tags ``student_rNN_<mode>``);
3. at the ablation ratio: EncRL with one alignment term only (``student_rNN_encrl_mse``,
   ``student_rNN_encrl_clip``), from configs derived from the shipped one, written to
   ``<expdir>/benchmark/conf/`` (:mod:`espnet_lw.benchmark.ablation`).

While it trains, a :class:`~espnet_lw.benchmark.epochs.CheckpointKeeper` keeps every epoch's
checkpoint; then every epoch is decoded and the report written.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from espnet_lw.benchmark.ablation import write_ablation_configs
from espnet_lw.benchmark.epochs import CheckpointKeeper, decode_epochs
from espnet_lw.benchmark.report import write_report
from espnet_lw.benchmark.systems import discover_systems
from espnet_lw.utils.cli import UserError

#: run.sh options the benchmark sets itself
RESERVED = {"--stage", "--stop_stage", "--test_sets", "--student_config", "--student_mode", "--student_tag",
            "--student_args", "--expdir", "--dumpdir"}


def check_run_args(run_args: Sequence[str]) -> None:
    """Refuse a ``run.sh`` option the benchmark sets itself (:data:`RESERVED`)."""
    for a in run_args:
        name = a.split("=", 1)[0]
        if name in RESERVED:
            raise UserError(f"{name} is set by the benchmark itself",
                            fix="give --test_sets / --student_args / --expdir / --dumpdir to the benchmark, "
                                "not as a run.sh option")


def plan(ratios: Sequence[str], ablation_ratio: Optional[str], test_sets: str, student_args: str,
         run_args: Sequence[str], ablation_confs: Dict[str, Path], expdir: str, dumpdir: str) -> List[List[str]]:
    """The ``./run.sh`` command lines of a benchmark, in order."""
    common = ["--test_sets", test_sets, "--expdir", expdir, "--dumpdir", dumpdir]
    cmds = [["./run.sh", "--stage", "1", "--stop_stage", "13", *common, *run_args]]
    sargs = ["--student_args", student_args] if student_args.strip() else []

    def student(config: str, mode: str, tag: str) -> List[str]:
        return ["./run.sh", "--stage", "11", "--stop_stage", "13", *common, "--student_config", config,
                "--student_mode", mode, "--student_tag", tag, *sargs, *run_args]

    for r in ratios:
        for mode in ("scratch", "pruned", "encrl"):
            cmds.append(student(f"conf/student_r{r}.yaml", mode, f"student_r{r}_{mode}"))
    if ablation_ratio:
        for path in ablation_confs.values():
            cmds.append(student(str(path), "encrl", path.stem))
    return cmds


def run_all(recipe_dir: str, expdir: str, dumpdir: str, ratios: Sequence[str], ablation_ratio: Optional[str],
            test_sets: str, epoch_test_sets: Sequence[str], student_args: str, run_args: List[str],
            batch_size: int = 8, command: Optional[str] = None, dry_run: bool = False) -> None:
    """Train the reference and the students, decode every epoch, write the report.

    Runs in ``recipe_dir`` (the process changes directory there); ``expdir`` / ``dumpdir`` are
    relative to it. ``ablation_ratio``: ``None``, ``""`` or ``"none"`` for no ablation.
    ``test_sets`` is run.sh's space-separated list. ``dry_run``: print the ``./run.sh`` command
    lines (the ablation configs are written) and stop.
    """
    recipe = Path(recipe_dir).resolve()
    if not (recipe / "run.sh").is_file():
        raise UserError("no run.sh here: not a recipe dir", str(recipe), "pass --recipe_dir egs2/<corpus>/lw1")
    check_run_args(run_args)
    os.chdir(recipe)
    exp = Path(expdir)
    for r in ratios:
        if not Path(f"conf/student_r{r}.yaml").is_file():
            raise UserError(f"no student config for ratio {r}", f"conf/student_r{r}.yaml", "see conf/student_r*.yaml")
    abl = ablation_ratio if ablation_ratio not in ("", "none", None) else None
    confs = {}
    if abl:
        confs = write_ablation_configs(Path(f"conf/student_r{abl}.yaml"), exp / "benchmark" / "conf",
                                       f"student_r{abl}")
    cmds = plan(ratios, abl, test_sets, student_args, run_args, confs, expdir, dumpdir)
    for c in cmds:
        logging.info("will run: %s", shlex.join(c))
    if dry_run:
        for c in cmds:
            print(shlex.join(c))
        return
    exp.mkdir(parents=True, exist_ok=True)
    with CheckpointKeeper(exp):
        for c in cmds:
            logging.info("running: %s", shlex.join(c))
            rc = subprocess.call(c)
            if rc != 0:
                raise UserError(f"'{shlex.join(c)}' failed (exit {rc})", fix="see its log above; re-running the "
                                "benchmark resumes (finished stages are skipped)")
    systems = discover_systems(exp)
    decode_epochs(exp, Path(dumpdir), systems, epoch_test_sets, batch_size)
    write_report(recipe, exp, test_sets.split(), epoch_test_sets, command)


def enter_recipe(recipe_dir: str, expdir: str) -> Tuple[Path, Path]:
    """``(recipe, expdir)`` of an existing recipe dir and exp dir, after changing directory to the recipe
    (``expdir`` stays relative to it)."""
    recipe = Path(recipe_dir).resolve()
    if not recipe.is_dir():
        raise UserError("no such recipe dir", str(recipe))
    os.chdir(recipe)
    exp = Path(expdir)
    if not exp.is_dir():
        raise UserError("no exp dir", str(recipe / exp), "train something first (local/benchmark.sh)")
    return recipe, exp
