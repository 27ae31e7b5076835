"""Synthesise the mini_synth corpus (LibriSpeech layout) from WordNet sentences with espeak-ng, flite and sox.

Example::

    python -m espnet_lw.bin.make_mini_synth --out corpus/MiniSynth --size default --nj 2

A complete corpus (marker file ``.complete`` with the same settings) is left
untouched; an interrupted build is resumed.  See :mod:`espnet_lw.data.synth`.
"""

from __future__ import annotations

import argparse

from espnet_lw.data.synth import DEFAULT_SNR_DB_RANGE, SIZES, build_corpus
from espnet_lw.utils.cli import UserError, run_main, setup_logging


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(
        prog="python -m espnet_lw.bin.make_mini_synth",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, help="corpus directory to create (e.g. corpus/MiniSynth)")
    p.add_argument("--size", default="default", choices=list(SIZES),
                   help="tiny: ~40 train utts (tests); small: ~20 min train; default: ~1.5 h train, 624 dev/test utts")
    p.add_argument("--seed", type=int, default=0, help="seed for texts, speakers and noise")
    p.add_argument("--nj", type=int, default=2, help="parallel synthesis jobs (threads driving espeak-ng/flite/sox)")
    p.add_argument("--snr_db_range", type=float, nargs=2, default=list(DEFAULT_SNR_DB_RANGE), metavar=("LOW", "HIGH"),
                   help="SNR range (dB) of the site noise in the field_adapt / field_test splits")
    p.add_argument("--overwrite", action="store_true",
                   help="rebuild a corpus in --out that was made with different settings")
    p.add_argument("--log_level", default="INFO", help="logging level")
    return p


def main(argv=None) -> None:
    """Entry point."""
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    if args.nj < 1:
        raise UserError(f"--nj must be >= 1, got {args.nj}")
    build_corpus(args.out, size=args.size, seed=args.seed, nj=args.nj,
                 snr_db_range=tuple(args.snr_db_range), overwrite=args.overwrite)


if __name__ == "__main__":
    run_main(main)
