"""Make a Kaldi-style data dir (wav.scp, text, utt2spk, spk2utt[, utt2gender]) from a LibriSpeech split.

Example::

    python -m espnet_lw.bin.prep_librispeech LibriSpeech/dev-clean data/dev_clean
    python -m espnet_lw.bin.prep_librispeech corpus/MiniSynth/train data/train

Speakers are ``<reader>-<chapter>`` as in ESPnet's LibriSpeech recipe.  A
``.flac`` without a transcript line is an error unless ``--skip_untranscribed``.
See :mod:`espnet_lw.data.librispeech` for the full policy.
"""

from __future__ import annotations

import argparse

from espnet_lw.data.librispeech import prepare
from espnet_lw.utils.cli import run_main, setup_logging


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(
        prog="python -m espnet_lw.bin.prep_librispeech",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("src", metavar="SRC_SPLIT_DIR",
                   help="LibriSpeech-layout split dir, e.g. LibriSpeech/dev-clean or corpus/MiniSynth/dev")
    p.add_argument("dst", metavar="DST_DATA_DIR", help="Kaldi-style data directory to create, e.g. data/dev")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty DST_DATA_DIR")
    p.add_argument("--skip_untranscribed", action="store_true",
                   help="warn about and skip .flac files without a transcript line instead of failing")
    p.add_argument("--speakers_txt", default=None,
                   help="speaker table for utt2gender (default: SPEAKERS.TXT in SRC or its parent, if any)")
    p.add_argument("--log_level", default="INFO", help="logging level")
    return p


def main(argv=None) -> None:
    """Entry point."""
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    prepare(args.src, args.dst, overwrite=args.overwrite,
            skip_untranscribed=args.skip_untranscribed, speakers_txt=args.speakers_txt)


if __name__ == "__main__":
    run_main(main)
