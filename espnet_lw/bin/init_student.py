"""Make a student's initial weights out of reference blocks (the "pruned reference" baseline).

    python -m espnet_lw.bin.init_student \\
        --reference_config exp/asr_reference/config.yaml \\
        --reference_model exp/asr_reference/valid.loss.ave.pth \\
        --student_config conf/student_r67.yaml --blocks first|last|every_other|0,4,8,11 \\
        --out exp/init_r67_every_other.pth

The output is a partial ESPnet state dict: ``encoder.embed.*``, the chosen reference blocks as
``encoder.encoders.0..k-1.*`` (renumbered), ``encoder.after_norm.*``, ``ctc.ctc_lo.*`` and the
global-MVN statistics ``normalize.{mean,std}`` (unless ``--include_normalize false``). Give it
to training with ``--init_param <out>`` (ESPnet updates the new model's state dict with it), or
decode it directly as a model of its own (the paper's "delete blocks, no retraining" baseline)
after building it with the student config.

``first`` keeps blocks 0..k-1, ``last`` keeps the last k (the paper's "delete the first blocks"),
``every_other`` keeps k evenly spaced blocks ending with the last one. The student's
``encoder_conf`` must equal the reference's apart from ``num_blocks`` (and dropout rates):
this is checked by building the student encoder and comparing every tensor shape.
"""

from __future__ import annotations

import argparse
import logging

from espnet_lw.models.blocks import build_init
from espnet_lw.utils.cli import run_main, setup_logging, str2bool


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m espnet_lw.bin.init_student",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--reference_config", required=True, help="the reference's ESPnet config.yaml")
    p.add_argument("--reference_model", required=True, help="the reference's model file (.pth)")
    p.add_argument("--student_config", required=True, help="the student's training config (encoder_conf)")
    p.add_argument("--blocks", default="first", help="first | last | every_other | comma-separated indices [first]")
    p.add_argument("--include_normalize", type=str2bool, default=True,
                   help="also copy the global-MVN statistics normalize.{mean,std} [true]")
    p.add_argument("--out", required=True, help="output state dict (.pth)")
    p.add_argument("--log_level", default="INFO")
    return p


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    from espnet_lw.models.loading import save_state  # noqa: PLC0415 - imports torch, after the parsing

    init, idx = build_init(args.reference_config, args.reference_model, args.student_config,
                           args.blocks, args.include_normalize)
    out = save_state(init, args.out)
    logging.info("wrote %s: reference blocks %s + embed, after_norm, ctc head%s (%d tensors)",
                 out, idx, ", normalize" if args.include_normalize else "", len(init))


if __name__ == "__main__":
    run_main(main)
