"""Derive the ESPnet training configs of a student from the reference's own config.

A student config (``conf/student_r*.yaml``) only says what differs from the reference (number of
blocks, the EncRL loss, epochs of each step); everything else comes from the reference's
``config.yaml``. Its schema and the derivation: :mod:`espnet_lw.models.student_config`.

    python -m espnet_lw.bin.make_student_configs --reference_config exp/asr_ref/config.yaml \\
        --reference_model exp/asr_ref/valid.loss.ave.pth --student_config conf/student_r67.yaml \\
        --mode encrl --out_dir exp/asr_student_r67_encrl/conf [--reference_cache DIR] [--seed N]

writes ``encrl.yaml`` + ``finetune.yaml`` (mode encrl), ``scratch.yaml`` (mode scratch),
``finetune.yaml`` + ``blocks.txt`` (mode pruned), ``control.yaml`` or ``kd.yaml`` (+ ``init_blocks.txt``:
the reference blocks the student starts from, unless random), and in every mode ``student.json``, the
student's identity as the benchmark reads it ({mode, ratio, num_blocks, seed, init, epochs, ...}).
"""

from __future__ import annotations

import argparse

from espnet_lw.models.student_config import MODES, make_configs, student_blocks, write_student_configs
from espnet_lw.utils.cli import run_main, setup_logging

__all__ = ["get_parser", "main", "make_configs", "student_blocks"]  # make_configs: tests/test_benchmark.py


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference_config", required=True, help="the reference exp's config.yaml")
    p.add_argument("--reference_model", required=True, help="the reference exp's model .pth")
    p.add_argument("--student_config", required=True, help="conf/student_r*.yaml")
    p.add_argument("--mode", choices=sorted(MODES), default="encrl")
    p.add_argument("--reference_cache", help="dir written by dump_reference_targets (modes encrl, kd)")
    p.add_argument("--seed", type=int, default=None,
                   help="the trainer's seed of every training of this student [the reference config's]")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--trained_dir", help="the student's exp dir: when a training in it has finished "
                   "(.done.stage11), configs in --out_dir that would change are refused, not overwritten")
    return p


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    write_student_configs(args.reference_config, args.reference_model, args.student_config, args.mode,
                          args.out_dir, args.reference_cache, args.trained_dir, args.seed)


if __name__ == "__main__":
    run_main(main)
