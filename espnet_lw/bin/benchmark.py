"""The students benchmark: reference; scratch / pruned / control / KD / EncRL students at each ratio, over
seeds; loss ablations; time to a dev target; statistics; provenance.

Four subcommands, each with ``--help``; run them from a recipe dir (``--recipe_dir``)::

    # everything: check the checkout, train (skipping what is trained), decode every epoch on dev, report
    python -m espnet_lw.bin.benchmark run --recipe_dir . [--ratios "50 67 83"] [--seeds "1 2 3"] \\
        [--seed_ratios 67] [--modes "scratch pruned control kd encrl"] [--ablation_ratio 67] \\
        [--test_sets "dev test field_test"] [--epoch_test_sets dev] [--student_args="--max_epoch 2"] \\
        [--budget_config conf/student_r67_paper.yaml --budget_epochs "3 8 16"] \\
        [--allow_dirty] [-- <more run.sh options, e.g. --nbpe 48>]
    # CTC-greedy decoding + sclite of every kept <N>epoch.pth (cached: re-running redoes nothing)
    python -m espnet_lw.bin.benchmark epochs --recipe_dir . [--epoch_test_sets dev]
    # benchmark.json, the RESULTS.md section, the plot and logs/benchmark/, from the exp dirs as they are
    python -m espnet_lw.bin.benchmark report --recipe_dir . [--allow_dirty]
    # time to target on the trainer's validation CER, from a committed report alone (no exp dir)
    python -m espnet_lw.bin.benchmark from_logs --benchmark_json benchmark.json --logs logs/benchmark

``local/benchmark.sh`` in a recipe is a thin wrapper of ``run``. ``from_logs`` prints (markdown) the time to
target on the validation CER that ESPnet's trainer logs at every epoch (:mod:`espnet_lw.benchmark.valid_cer`),
recomputed from ``benchmark.json`` and the logs a report committed. The work is done by the package
``espnet_lw.benchmark``: what ``run`` trains and in which order is :mod:`espnet_lw.benchmark.runner`;
the checks of the checkout (one clean commit, ``--allow_dirty``) :mod:`espnet_lw.benchmark.provenance`;
the dev target, the cost to it (wall seconds, updates, audio seconds, everything a student pays) and
the statistics (mean / std / min-max over seeds, paired bootstrap against EncRL)
:mod:`espnet_lw.benchmark.compare`; per-epoch checkpoints :mod:`espnet_lw.benchmark.epochs`.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import List, Optional

from espnet_lw.benchmark.epochs import decode_epochs
from espnet_lw.benchmark.provenance import check_report
from espnet_lw.benchmark.report import write_report
from espnet_lw.benchmark.runner import MODES, enter_recipe, parse_seeds, run_all
from espnet_lw.benchmark.systems import DEFAULT_DECODE, discover_systems, select_systems
from espnet_lw.benchmark.valid_cer import from_logs, plot_valid_cer, valid_cer_lines
from espnet_lw.utils.cli import UserError, run_main, setup_logging, split_passthrough
from espnet_lw.utils.io import atomic_write_text


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe_dir", default=".", help="the recipe dir (holds run.sh, exp/, RESULTS.md)")
    p.add_argument("--expdir", default="exp", help="exp dir, relative to the recipe dir")
    p.add_argument("--dumpdir", default="dump", help="dump dir, relative to the recipe dir")
    p.add_argument("--epoch_test_sets", default="dev",
                   help="sets decoded at every epoch; the first one gives the target, the cost to it and the plot "
                        "(a dev set: test is decoded once per final model)")
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
    r.add_argument("--seeds", default="1 2 3", help="student seeds (--student_seed); the first is every ratio's")
    r.add_argument("--seed_ratios", default="67", help="ratios trained with every seed ('all': every ratio)")
    r.add_argument("--modes", default=" ".join(MODES), help="student modes trained at each ratio")
    r.add_argument("--ablation_ratio", default="67", help="ratio of the loss ablations ('none': no ablation)")
    r.add_argument("--test_sets", default="dev test field_test", help="sets decoded with the final models")
    r.add_argument("--budget_config", default="conf/student_r67_paper.yaml",
                   help="the config of the EncRL-epoch budget runs (the paper's setting)")
    r.add_argument("--budget_epochs", default="",
                   help="EncRL epochs of each budget run, first seed only (e.g. '3 8 16'; '': none)")
    r.add_argument("--student_args", default="", help="extra training args of every student run")
    r.add_argument("--batch_size", type=int, default=8, help="per-epoch decoding batch size")
    r.add_argument("--command", default=None, help="the command to record (default: this one)")
    r.add_argument("--dry_run", action="store_true", help="print the ./run.sh commands and stop")
    r.add_argument("--allow_dirty", action="store_true",
                   help="run on a dirty tree / another commit than the expdir's (marked in the report)")

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
    rep.add_argument("--test_sets", default="dev test field_test", help="sets of the final-WER columns")
    rep.add_argument("--decode_dir", default=None,
                     help=f"decode dir of the final WERs (default: {DEFAULT_DECODE}, else the first decode_*)")
    rep.add_argument("--ref_exp", default=None, help="the reference exp dir (default: found in the expdir)")
    rep.add_argument("--results", default="RESULTS.md", help="markdown file (relative to the recipe dir)")
    rep.add_argument("--command", default=None,
                     help="command to record (default: the run's, from the provenance record)")
    rep.add_argument("--allow_dirty", action="store_true",
                     help="write the report from a dirty tree (marked in the report)")
    rep.add_argument("--logs", default="logs/benchmark",
                     help="where the logs behind the numbers go, relative to the markdown file's dir ('': none)")

    fl = sub.add_parser("from_logs", formatter_class=fmt,
                        help="time to target on the trainer's validation CER, from a committed report",
                        description="Recompute the time to target on ESPnet's per-epoch validation CER (dev) "
                                    "from a report's benchmark.json and its logs dir alone (no exp dir, no "
                                    "decoding) and print it as markdown.")
    fl.add_argument("--benchmark_json", default="benchmark.json", help="the report's benchmark.json")
    fl.add_argument("--logs", default="logs/benchmark", help="the report's logs dir (<run>.train.log files)")
    fl.add_argument("--plot", default="", help="also draw dev CER vs cost per ratio into this PNG ('': none)")
    fl.add_argument("--json", default="", help="also write the comparison to this JSON file ('': none)")
    fl.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def _from_logs(args: argparse.Namespace) -> None:
    res = from_logs(Path(args.benchmark_json), Path(args.logs))
    prov = res.get("provenance") or {}
    print(f"From `{args.benchmark_json}` and `{args.logs}/` ({len(res['systems_read'])} runs; benchmark command "
          f"`{res.get('command')}` at commit `{prov.get('commit', '?')}`, "
          f"{'clean tree' if prov.get('clean') else 'tree state: see its provenance'}).")
    print("\n".join(valid_cer_lines(res["comparison_valid_cer"])))
    if args.plot:
        plot_valid_cer(res["_systems"], res["cache_users"], res["comparison_valid_cer"], Path(args.plot))
    if args.json:
        out = {k: v for k, v in res.items() if not k.startswith("_")}
        atomic_write_text(Path(args.json), json.dumps(out, indent=1) + "\n")


def main(argv: Optional[List[str]] = None) -> None:
    argv, run_args = split_passthrough(argv)
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    if run_args and args.cmd != "run":
        raise UserError("options after '--' are for ./run.sh: only the 'run' subcommand takes them")
    if args.cmd == "from_logs":
        _from_logs(args)
        return
    epoch_sets = args.epoch_test_sets.split()
    if args.cmd == "run":
        if args.command is None:
            recorded = argv + (["--", *run_args] if run_args else [])
            args.command = "python -m espnet_lw.bin.benchmark " + shlex.join(recorded)
        run_all(args.recipe_dir, args.expdir, args.dumpdir, args.ratios.split(), args.ablation_ratio, args.test_sets,
                epoch_sets, args.student_args, run_args, args.batch_size, args.command, args.dry_run,
                seeds=parse_seeds(args.seeds), seed_ratios=args.seed_ratios.split(), modes=args.modes.split(),
                allow_dirty=args.allow_dirty, budget_config=args.budget_config,
                budget_epochs=parse_seeds(args.budget_epochs, "--budget_epochs") if args.budget_epochs.strip() else [])
        return
    recipe, expdir = enter_recipe(args.recipe_dir, args.expdir)
    if args.cmd == "epochs":
        systems = select_systems(discover_systems(expdir), args.systems.split())
        decode_epochs(expdir, Path(args.dumpdir), systems, epoch_sets, args.batch_size)
    else:
        command = "python -m espnet_lw.bin.benchmark " + shlex.join(argv)
        provenance = check_report(recipe, expdir, command, args.allow_dirty)
        write_report(recipe, expdir, args.test_sets.split(), epoch_sets, args.command, args.decode_dir,
                     Path(args.ref_exp) if args.ref_exp else None, args.results, provenance=provenance,
                     dumpdir=Path(args.dumpdir), logs=args.logs or None)


if __name__ == "__main__":
    run_main(main)
