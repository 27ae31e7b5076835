"""Field adaptation steps of stage 16 (egs2/TEMPLATE/lw1/lw.sh); the library is :mod:`espnet_lw.adapt`.

    # write <out>/conf/{adapt,train}.yaml, <out>/data/{train,valid}, <out>/adapt.json (or reuse them)
    python -m espnet_lw.bin.adapt prepare --model_dir exp/asr_student_r67_encrl \\
        --config conf/adapt.yaml --adapt_data dump/raw/field_adapt --replay_data dump/raw/train \\
        --fs 16000 --out_dir exp/adapt_student_r67_encrl_adapt_field_adapt
    # a finished adaptation: stop (exit 1) when the options differ from those it was made with
    python -m espnet_lw.bin.adapt check ...same options...
    # after training: <out>/reference (the adapted weights under the original config.yaml)
    python -m espnet_lw.bin.adapt reference --model_dir M --out_dir O
    # the before/after table: <out>/adapt_results.md
    python -m espnet_lw.bin.adapt report --model_dir M --out_dir O --decode_tag T --sets "field_test test"

The training itself is ESPnet's (python -m espnet_lw.bin.asr_train --config <out>/conf/train.yaml).
"""

from __future__ import annotations

import argparse

from espnet_lw.adapt.prepare import prepare, write_reference_view
from espnet_lw.adapt.report import write_report
from espnet_lw.utils.cli import run_main, setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m espnet_lw.bin.adapt", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="step", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model_dir", required=True, help="exp dir of the model to adapt (config.yaml + model)")
    common.add_argument("--model_file", default="valid.loss.ave.pth", help="its model file [%(default)s]")
    common.add_argument("--out_dir", required=True, help="the adaptation's own exp dir")
    for step in ("prepare", "check"):
        s = sub.add_parser(step, parents=[common], help=f"{step} an adaptation")
        s.add_argument("--config", required=True, help="conf/adapt*.yaml")
        s.add_argument("--adapt_data", required=True, help="the formatted adapt set (dump/raw/<set>)")
        s.add_argument("--replay_data", help="the formatted original training set (replay > 0)")
        s.add_argument("--fs", type=int, required=True, help="sampling rate of the formatted audio")
        s.add_argument("--token_suffix", default="char", help="suffix of the text shape file [%(default)s]")
    sub.add_parser("reference", parents=[common], help="write <out_dir>/reference after training")
    r = sub.add_parser("report", parents=[common], help="write <out_dir>/adapt_results.md")
    r.add_argument("--decode_tag", required=True)
    r.add_argument("--sets", required=True, help="space-separated test sets")
    r.add_argument("--train_seconds", type=float)
    return p


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    if args.step in ("prepare", "check"):
        status = prepare(model_dir=args.model_dir, model_file=args.model_file, config_file=args.config,
                         adapt_data=args.adapt_data, out_dir=args.out_dir, fs=args.fs,
                         replay_data=args.replay_data, token_suffix=args.token_suffix,
                         check_only=args.step == "check")
        print(status)
    elif args.step == "reference":
        print(write_reference_view(args.out_dir, args.model_dir, args.model_file))
    else:
        print(write_report(args.model_dir, args.out_dir, args.decode_tag, args.sets.split(), args.train_seconds),
              end="")


if __name__ == "__main__":
    run_main(main)
