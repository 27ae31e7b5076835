"""Running a whole benchmark from a recipe dir: train with ``./run.sh``, decode every epoch, report.

What :func:`run_all` does:

0. checks the checkout (:mod:`espnet_lw.benchmark.provenance`): a dirty tree, another commit than the
   expdir's benchmark started at, or models trained outside it are refused unless ``allow_dirty``;
1. trains the reference: stages 1-13;
2. for each seed, each ratio NN that runs that seed, each mode (:data:`MODES`): stages 11-13 with
   ``--student_config conf/student_rNN.yaml --student_mode <mode> --student_seed <seed>``, tag
   ``student_rNN_<mode>_seed<seed>``. Every student run gets an explicit seed: the ratios of
   ``seed_ratios`` run every seed of ``seeds``, the others the first one only (so a single-seed run
   is the same run as the first seed of a multi-seed one). Seeds are the outer loop: an interrupted
   benchmark has whole single-seed tables first;
3. at the ablation ratio, with the same seeds as that ratio: EncRL with one alignment term only
   (``student_rNN_encrl_mse_seed<seed>``, ...), from configs derived from the shipped one, written to
   ``<expdir>/benchmark/conf/`` (:mod:`espnet_lw.benchmark.ablation`);
   with ``budget_config`` and ``budget_epochs`` (the paper's setting and EncRL epoch counts), with the
   first seed: that config with each number of EncRL epochs (``<config stem>_e<N>_seed<seed>``);
4. decodes every epoch checkpoint on the epoch sets (dev by default;
   :mod:`espnet_lw.benchmark.epochs`), test sets are decoded once per final model by stage 12;
5. writes the report (:mod:`espnet_lw.benchmark.report`).

While it trains, a :class:`~espnet_lw.benchmark.epochs.CheckpointKeeper` keeps every epoch's
checkpoint.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from espnet_lw.benchmark.ablation import write_ablation_configs, write_budget_configs
from espnet_lw.benchmark.epochs import CheckpointKeeper, decode_epochs
from espnet_lw.benchmark.provenance import check_report, check_run
from espnet_lw.benchmark.report import write_report
from espnet_lw.benchmark.systems import discover_systems
from espnet_lw.utils.cli import UserError

#: the student modes of lw.sh's --student_mode, in the order they are trained
MODES = ("scratch", "pruned", "control", "kd", "encrl")

#: run.sh options the benchmark sets itself
RESERVED = {"--stage", "--stop_stage", "--test_sets", "--student_config", "--student_mode", "--student_tag",
            "--student_args", "--student_seed", "--expdir", "--dumpdir"}


def check_run_args(run_args: Sequence[str]) -> None:
    """Refuse a ``run.sh`` option the benchmark sets itself (:data:`RESERVED`)."""
    for a in run_args:
        name = a.split("=", 1)[0]
        if name in RESERVED:
            raise UserError(f"{name} is set by the benchmark itself",
                            fix="give --test_sets / --student_args / --seeds / --expdir / --dumpdir to the "
                                "benchmark, not as a run.sh option")


def parse_seeds(seeds: str, what: str = "--seeds") -> List[int]:
    """``"1 2 3"`` -> ``[1, 2, 3]`` (distinct non-negative integers, order kept); ``what``: the option."""
    out: List[int] = []
    for word in seeds.split():
        if not word.isdigit():
            raise UserError(f"{what}: {word!r} is not a non-negative integer")
        if int(word) not in out:
            out.append(int(word))
    if not out:
        raise UserError(f"{what}: at least one value is needed")
    return out


def seeds_for(ratio: str, seeds: Sequence[int], seed_ratios: Sequence[str]) -> List[int]:
    """All ``seeds`` for a ratio of ``seed_ratios`` (``"all"``: every ratio), else the first seed only."""
    return list(seeds) if ("all" in seed_ratios or ratio in seed_ratios) else list(seeds[:1])


def check_modes(modes: Sequence[str]) -> List[str]:
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise UserError(f"--modes: unknown {bad}" if bad else "--modes: none given",
                        fix=f"choose from {' '.join(MODES)}")
    return [m for m in MODES if m in modes]


def plan(ratios: Sequence[str], ablation_ratio: Optional[str], test_sets: str, student_args: str,
         run_args: Sequence[str], ablation_confs: Dict[str, Path], expdir: str, dumpdir: str,
         seeds: Sequence[int] = (1,), seed_ratios: Sequence[str] = (), modes: Sequence[str] = MODES,
         budget_confs: Optional[Dict[int, Path]] = None) -> List[List[str]]:
    """The ``./run.sh`` command lines of a benchmark, in order (see the module doc)."""
    common = ["--test_sets", test_sets, "--expdir", expdir, "--dumpdir", dumpdir]
    cmds = [["./run.sh", "--stage", "1", "--stop_stage", "13", *common, *run_args]]
    sargs = ["--student_args", student_args] if student_args.strip() else []

    def student(config: str, mode: str, tag: str, seed: int) -> List[str]:
        return ["./run.sh", "--stage", "11", "--stop_stage", "13", *common, "--student_config", config,
                "--student_mode", mode, "--student_seed", str(seed), "--student_tag", tag, *sargs, *run_args]

    for seed in seeds:
        for r in ratios:
            if seed in seeds_for(r, seeds, seed_ratios):
                for mode in modes:
                    cmds.append(student(f"conf/student_r{r}.yaml", mode, f"student_r{r}_{mode}_seed{seed}", seed))
        if ablation_ratio and seed in seeds_for(ablation_ratio, seeds, seed_ratios):
            for path in ablation_confs.values():
                cmds.append(student(str(path), "encrl", f"{path.stem}_seed{seed}", seed))
        if budget_confs and seed == seeds[0]:
            for path in budget_confs.values():
                cmds.append(student(str(path), "encrl", f"{path.stem}_seed{seed}", seed))
    return cmds


def run_all(recipe_dir: str, expdir: str, dumpdir: str, ratios: Sequence[str], ablation_ratio: Optional[str],
            test_sets: str, epoch_test_sets: Sequence[str], student_args: str, run_args: List[str],
            batch_size: int = 8, command: Optional[str] = None, dry_run: bool = False,
            seeds: Sequence[int] = (1, 2, 3), seed_ratios: Sequence[str] = ("67",), modes: Sequence[str] = MODES,
            allow_dirty: bool = False, budget_config: Optional[str] = None,
            budget_epochs: Sequence[int] = ()) -> None:
    """Check the checkout, train the reference and the students, decode every epoch, write the report.

    Runs in ``recipe_dir`` (the process changes directory there); ``expdir`` / ``dumpdir`` are
    relative to it. ``ablation_ratio``: ``None``, ``""`` or ``"none"`` for no ablation.
    ``test_sets`` is run.sh's space-separated list. ``dry_run``: print the ``./run.sh`` command
    lines (the ablation configs are written; the checkout is checked but nothing refused or recorded).
    ``budget_config`` / ``budget_epochs``: a student config (the paper's setting) trained with each of
    these numbers of EncRL epochs, first seed only (none when either is empty).
    """
    recipe = Path(recipe_dir).resolve()
    if not (recipe / "run.sh").is_file():
        raise UserError("no run.sh here: not a recipe dir", str(recipe), "pass --recipe_dir egs2/<corpus>/lw1")
    check_run_args(run_args)
    modes = check_modes(modes)
    if not epoch_test_sets:
        raise UserError("--epoch_test_sets is empty: the dev target needs per-epoch WERs on a dev set")
    os.chdir(recipe)
    exp = Path(expdir)
    for r in ratios:
        if not Path(f"conf/student_r{r}.yaml").is_file():
            raise UserError(f"no student config for ratio {r}", f"conf/student_r{r}.yaml", "see conf/student_r*.yaml")
    abl = ablation_ratio if ablation_ratio not in ("", "none", None) else None
    if dry_run:
        try:
            check_run(recipe, exp, command, allow_dirty, dry_run=True)
        except UserError as e:
            print(f"# note: a real run would stop here: {e}", file=sys.stderr)
    else:
        check_run(recipe, exp, command, allow_dirty)
    confs = {}
    if abl:
        confs = write_ablation_configs(Path(f"conf/student_r{abl}.yaml"), exp / "benchmark" / "conf",
                                       f"student_r{abl}")
    budget = {}
    if budget_config and budget_epochs:
        budget = write_budget_configs(Path(budget_config), budget_epochs, exp / "benchmark" / "conf")
    cmds = plan(ratios, abl, test_sets, student_args, run_args, confs, expdir, dumpdir, seeds, seed_ratios, modes,
                budget)
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
    provenance = check_report(recipe, exp, command, allow_dirty)
    write_report(recipe, exp, test_sets.split(), epoch_test_sets, command, provenance=provenance,
                 dumpdir=Path(dumpdir))


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
