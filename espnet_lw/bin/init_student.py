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
from pathlib import Path

import yaml

from espnet_lw.utils.cli import UserError, run_main, setup_logging, str2bool


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


def build_init(reference_config, reference_model, student_config, blocks="first", include_normalize=True):
    """Return ``(state_dict, block_indices)`` for a student described by ``student_config``."""
    import torch  # noqa: PLC0415

    from espnet_lw.models.encrl import (  # noqa: PLC0415
        check_init_state,
        load_reference,
        reference_init_state,
        select_blocks,
    )
    from espnet_lw.tasks.asr import _asr  # noqa: PLC0415

    torch.set_num_threads(1)
    student_config = Path(student_config)
    if not student_config.is_file():
        raise UserError("student config not found", str(student_config))
    with student_config.open(encoding="utf-8") as fh:
        sconf = yaml.safe_load(fh) or {}
    ref, rargs = load_reference(reference_config, reference_model)
    s_enc_name = sconf.get("encoder", rargs.encoder)
    if s_enc_name != rargs.encoder:
        raise UserError(f"the student's encoder is {s_enc_name!r}, the reference's {rargs.encoder!r}",
                        str(student_config), "use the reference's encoder type with fewer num_blocks")
    s_enc_conf = dict(sconf.get("encoder_conf") or {})
    if "num_blocks" not in s_enc_conf:
        raise UserError("encoder_conf.num_blocks is not set", str(student_config))
    if "token_list" in sconf and isinstance(sconf["token_list"], list) and sconf["token_list"] != list(ref.token_list):
        raise UserError("the student's token list differs from the reference's", str(student_config),
                        "use the reference's token list (the CTC head is copied)")
    # the feature dimension the reference encoder was built for (its frontend's output)
    if ref.frontend is not None:
        input_size = ref.frontend.output_size()
    else:
        input_size = int(getattr(rargs, "input_size", 0) or 0)
    student_encoder = _asr.encoder_choices.get_class(s_enc_name)(input_size=input_size, **s_enc_conf)
    n_ref = len(ref.encoder.encoders)
    n_stu = len(student_encoder.encoders)
    try:
        idx = select_blocks(blocks, n_ref, n_stu)
    except ValueError as e:
        raise UserError(f"--blocks: {e}") from e
    init = reference_init_state(ref.state_dict(), idx)
    if not include_normalize:
        init = {k: v for k, v in init.items() if not k.startswith("normalize.")}
    student_shapes = {"encoder." + k: v for k, v in student_encoder.state_dict().items()}
    student_shapes.update({k: v for k, v in init.items() if not k.startswith("encoder.")})
    check_init_state(init, student_shapes, str(student_config))
    return init, idx


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    import torch  # noqa: PLC0415

    init, idx = build_init(args.reference_config, args.reference_model, args.student_config,
                           args.blocks, args.include_normalize)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(init, out)
    logging.info("wrote %s: reference blocks %s + embed, after_norm, ctc head%s (%d tensors)",
                 out, idx, ", normalize" if args.include_normalize else "", len(init))


if __name__ == "__main__":
    run_main(main)
