"""The students benchmark: reference, scratch / pruned / EncRL students, loss ablations, WER vs time.

Three subcommands, each with ``--help``; run them from a recipe dir (``--recipe_dir``)::

    # everything: train (skipping what is trained), decode every epoch, write the report
    python -m espnet_lw.bin.benchmark run --recipe_dir . [--ratios "50 67 83"] [--ablation_ratio 67] \\
        [--test_sets "dev test field"] [--epoch_test_sets test] [--student_args="--max_epoch 2"] \\
        [-- <more run.sh options, e.g. --nbpe 48>]
    # CTC-greedy decoding + sclite of every kept <N>epoch.pth (cached: re-running redoes nothing)
    python -m espnet_lw.bin.benchmark epochs --recipe_dir . [--epoch_test_sets test]
    # benchmark.json, the RESULTS.md section and the plot, from the exp dirs as they are
    python -m espnet_lw.bin.benchmark report --recipe_dir .

``local/benchmark.sh`` in a recipe is a thin wrapper of ``run``. The work is done by the
package ``espnet_lw.benchmark`` (this module parses the options).

What ``run`` trains (each step is ``./run.sh``, so finished stages are skipped):

1. the reference: stages 1-13;
2. for each ratio NN: stages 11-13 with ``--student_config conf/student_rNN.yaml`` and
   ``--student_mode`` scratch, pruned and encrl (tags ``student_rNN_<mode>``);
3. at ``--ablation_ratio``: EncRL with one alignment term only (``student_rNN_encrl_mse``,
   ``student_rNN_encrl_clip``), from configs derived from the shipped one, written to
   ``<expdir>/benchmark/conf/``.

Per-epoch checkpoints
---------------------
ESPnet deletes every ``<N>epoch.pth`` that is not among the ``keep_nbest_models`` best (the
latest is kept). Raising ``--keep_nbest_models`` is not a fix: ESPnet averages that many
models into ``valid.loss.ave.pth``, so it would change the final model. Instead, while ``run``
trains, a keeper thread hard-links every new ``<N>epoch.pth`` of ``<expdir>/asr_*/`` into
``<expdir>/benchmark/ckpt/asr_*/`` (a copy where hard links fail), so the file survives
ESPnet's clean-up. Models trained before (or outside) ``run`` have only the epochs ESPnet
kept: their curves have gaps (``null`` in ``wer_per_epoch``).

Wall time
---------
Per epoch: ESPnet's ``<N>epoch results: [train] ... time=... [valid] ... time=...`` lines of
each ``train.log`` (train + validation). The x axis of the plot is *student training wall
time*: an EncRL student's curve starts after its EncRL epochs and the reference-target cache
(``dump_reference_targets``, timed in ``stage_times.tsv``), which is counted in full for every
EncRL student (conservative; ``speedup_to_target_amortised`` shares it among the EncRL
students). The reference's own training is not counted: it is the model being compressed.

Speed-up (key: the ratio of removed blocks, e.g. ``"0.667"``)
-------------------------------------------------------------
target = the WER (first ``--epoch_test_sets`` set) of the scratch student at its last epoch;
``t_scratch`` = the scratch student's summed epoch times; ``e`` = the first fine-tune epoch of
the EncRL student (loss clip+mse) whose WER is <= target, ``t_ft(e)`` its summed fine-tune
epoch times up to ``e``:

* ``speedup_to_target_finetune_only`` = t_scratch / t_ft(e)  (the paper's count);
* ``speedup_to_target`` = t_scratch / (t_encrl + t_cache + t_ft(e))  (what a user pays);
* ``speedup_to_target_amortised`` = t_scratch / (t_encrl + t_cache / n_encrl + t_ft(e));

``null`` when the EncRL student never reaches the target (or a curve is missing).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import List, Optional

from espnet_lw.benchmark.epochs import decode_epochs
from espnet_lw.benchmark.report import write_report
from espnet_lw.benchmark.runner import enter_recipe, run_all
from espnet_lw.benchmark.systems import DEFAULT_DECODE, discover_systems, select_systems
from espnet_lw.utils.cli import UserError, run_main, setup_logging


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe_dir", default=".", help="the recipe dir (holds run.sh, exp/, RESULTS.md)")
    p.add_argument("--expdir", default="exp", help="exp dir, relative to the recipe dir")
    p.add_argument("--dumpdir", default="dump", help="dump dir, relative to the recipe dir")
    p.add_argument("--epoch_test_sets", default="test",
                   help="sets decoded at every epoch; the first one gives the plot and the speed-up")
    p.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    r = sub.add_parser("run", formatter_class=fmt,
                       help="train everything (finished stages skipped), decode every epoch, report",
                       description="Train the reference and the students with ./run.sh, decode every epoch, "
                                   "write the report. Options after '--' go to every ./run.sh call. Give "
                                   "--student_args=\"--max_epoch 2\" with '=' when the value starts with '--'.")
    _common(r)
    r.add_argument("--ratios", default="50 67 83", help="student configs conf/student_r<NN>.yaml to train")
    r.add_argument("--ablation_ratio", default="67", help="ratio of the loss ablations ('none': no ablation)")
    r.add_argument("--test_sets", default="dev test field", help="sets decoded with the final models")
    r.add_argument("--student_args", default="", help="extra training args of every student run")
    r.add_argument("--batch_size", type=int, default=8, help="per-epoch decoding batch size")
    r.add_argument("--command", default=None, help="the command to record (default: this one)")
    r.add_argument("--dry_run", action="store_true", help="print the ./run.sh commands and stop")

    e = sub.add_parser("epochs", formatter_class=fmt, help="decode + score every kept epoch checkpoint (cached)",
                       description="CTC greedy decoding and sclite scoring of every <N>epoch.pth of every system "
                                   "(exp dir + benchmark/ckpt); results cached in <expdir>/benchmark/epochs/.")
    _common(e)
    e.add_argument("--systems", default="", help="only these systems (exp dir names without 'asr_')")
    e.add_argument("--batch_size", type=int, default=8)

    rep = sub.add_parser("report", formatter_class=fmt, help="write benchmark.json, RESULTS.md section, plot",
                         description="Regenerate <expdir>/benchmark/benchmark.json, wer_vs_time.png and the "
                                     "benchmark section of RESULTS.md (+ copies next to it) from the exp dirs; "
                                     "no training, no decoding.")
    _common(rep)
    rep.add_argument("--test_sets", default="dev test field", help="sets of the final-WER columns")
    rep.add_argument("--decode_dir", default=None,
                     help=f"decode dir of the final WERs (default: {DEFAULT_DECODE}, else the first decode_*)")
    rep.add_argument("--ref_exp", default=None, help="the reference exp dir (default: found in the expdir)")
    rep.add_argument("--results", default="RESULTS.md", help="markdown file (relative to the recipe dir)")
    rep.add_argument("--command", default=None,
                     help="command to record (default: the one in the existing benchmark.json)")
    return p


def main(argv: Optional[List[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    run_args: List[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, run_args = argv[:i], argv[i + 1:]
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    if run_args and args.cmd != "run":
        raise UserError("options after '--' are for ./run.sh: only the 'run' subcommand takes them")
    epoch_sets = args.epoch_test_sets.split()
    if args.cmd == "run":
        if args.command is None:
            recorded = argv + (["--", *run_args] if run_args else [])
            args.command = "python -m espnet_lw.bin.benchmark " + shlex.join(recorded)
        run_all(args.recipe_dir, args.expdir, args.dumpdir, args.ratios.split(), args.ablation_ratio, args.test_sets,
                epoch_sets, args.student_args, run_args, args.batch_size, args.command, args.dry_run)
        return
    recipe, expdir = enter_recipe(args.recipe_dir, args.expdir)
    if args.cmd == "epochs":
        systems = select_systems(discover_systems(expdir), args.systems.split())
        decode_epochs(expdir, Path(args.dumpdir), systems, epoch_sets, args.batch_size)
    else:
        write_report(recipe, expdir, args.test_sets.split(), epoch_sets, args.command, args.decode_dir,
                     Path(args.ref_exp) if args.ref_exp else None, args.results)


if __name__ == "__main__":
    run_main(main)
