"""Stage 11 with a pretrained reference: check an ESPnet ASR model against the recipe and import it.

    # a model packed by espnet2.bin.pack (the form ESPnet's model zoo distributes)
    python -m espnet_lw.bin.import_reference --ref_model model.zip \\
        --token_list data/token_list/bpe_unigram256/tokens.txt --fs 16k \\
        --asr_config conf/reference_mini.yaml --stats_file exp/asr_stats_raw_bpe256/train/feats_stats.npz \\
        --out_dir exp/asr_ref_pretrained

    # a config.yaml + model file, or an ESPnet experiment directory
    python -m espnet_lw.bin.import_reference --ref_model exp/asr_x/config.yaml \\
        --ref_model_file exp/asr_x/valid.acc.ave.pth ... --out_dir exp/asr_ref_pretrained

The model is built with ESPnet from its config and its checkpoint loaded strictly; then its token
list, sampling rate, frontend settings (against ``--asr_config``, whose features made stage 10's
statistics) and normalisation are compared with the recipe's. Every difference is listed in one
error (exit 1) and nothing is written. On success ``--out_dir`` holds ``config.yaml`` (paths
pointing at the files next to it), ``valid.loss.ave.pth``, ``feats_stats.npz``, ``bpe.model``,
``tokens.txt``, ``params.txt``, ``source.txt`` (origin, sha256) and ``.done.stage11``: stage 11
uses it as ``--ref_exp``. Run again with the same model and recipe inputs, it does nothing;
a different model needs ``--overwrite true`` (the old import is kept as ``*.old.<time>``).

    # make the recipe use the model's tokens (stage 5's output replaced, the old one kept aside)
    python -m espnet_lw.bin.import_reference --ref_model model.zip --export_tokens data/token_list/bpe_unigram256

The last line on stdout is the status: ``imported``, ``skipped``, ``rechecked`` or ``exported``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from espnet_lw.utils.cli import UserError, run_main, setup_logging, str2bool


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref_model", required=True,
                   help="packed model (.zip / .tar.gz from espnet2.bin.pack), ESPnet exp dir, config.yaml or .pth")
    p.add_argument("--ref_model_file", help="with a config.yaml or exp dir: the model .pth (default: "
                   "valid.loss.ave.pth, valid.acc.ave.pth ... whichever exists)")
    p.add_argument("--out_dir", help="the reference exp dir to write (e.g. exp/asr_ref_pretrained)")
    p.add_argument("--model_name", default="valid.loss.ave.pth", help="file name of the weights in --out_dir")
    p.add_argument("--overwrite", type=str2bool, default=False,
                   help="replace a different import in --out_dir (kept as *.old.<time>), or import again")
    g = p.add_argument_group("the recipe (what is not given is not compared)")
    g.add_argument("--token_list", help="the recipe's token list (stage 5)")
    g.add_argument("--token_type", choices=("bpe", "char"))
    g.add_argument("--bpemodel", help="the recipe's sentencepiece model (stage 5)")
    g.add_argument("--fs", help="the recipe's sampling rate (16k or 16000)")
    g.add_argument("--asr_config", help="the recipe's training config: its frontend made stage 10's statistics")
    g.add_argument("--stats_file", help="stage 10's feats_stats.npz (the students' normalisation)")
    g.add_argument("--normalize", help="the recipe's feature normalisation (lw.sh --feats_normalize)")
    p.add_argument("--export_tokens", metavar="DIR",
                   help="instead of importing: write the model's tokens.txt + bpe.model into DIR (a recipe's "
                        "data/token_list/<name>), the old DIR kept as *.old.<time>")
    p.add_argument("--log_level", default="INFO")
    return p


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    from espnet_lw.utils.quiet import make_espnet_quiet  # noqa: PLC0415

    make_espnet_quiet()
    from espnet_lw import reference as ref  # noqa: PLC0415

    if args.export_tokens:
        dest = ref.export_tokens(args.ref_model, args.export_tokens, args.ref_model_file)
        logging.info("wrote the model's token list to %s; redo stages 10-11 (--stage 10 --overwrite true)", dest)
        print("exported")
        return
    if not args.out_dir:
        raise UserError("--out_dir is required (or --export_tokens DIR)")
    opt = lambda v: Path(v) if v not in (None, "", "none") else None  # noqa: E731
    recipe = ref.Recipe(
        token_list=opt(args.token_list), token_type=args.token_type, bpemodel=opt(args.bpemodel),
        fs=ref.parse_fs(args.fs) if args.fs else None, asr_config=opt(args.asr_config),
        stats_file=opt(args.stats_file), normalize=args.normalize,
    )
    status, out = ref.import_reference(args.ref_model, args.out_dir, recipe, args.ref_model_file,
                                       args.model_name, args.overwrite)
    msg = {
        "imported": f"imported {args.ref_model} into {out}",
        "skipped": f"{out} already holds {args.ref_model}, checked against the same recipe inputs: skipped",
        "rechecked": f"{out} already holds {args.ref_model}; checked again against the changed recipe inputs: ok",
    }[status]
    logging.info(msg)
    print(status)


if __name__ == "__main__":
    run_main(main)
