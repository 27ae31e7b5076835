"""Make a Kaldi-style data dir (wav.scp, segments, text, utt2spk, spk2utt, reco2dur) from a TED-LIUM set.

Example::

    python -m espnet_lw.bin.prep_tedlium --pad_start 0.15 --pad_end 0.1 TEDLIUM_release2/train data/train
    python -m espnet_lw.bin.prep_tedlium TEDLIUM_release-3/legacy/dev data/dev

SET_DIR holds ``sph/<talk>.sph`` and ``stm/<talk>.stm``.  Utterance ids are
``<talk>-<start*100>-<end*100>`` (7 digits each), speakers are pseudo-speakers of at most
``--max_spk_seconds`` of speech per talk, ``wav.scp`` holds one pipe per talk.  See
:mod:`espnet_lw.data.tedlium` for the exact rules (dropped lines, text normalisation, padding).
"""

from __future__ import annotations

import argparse

from espnet_lw.data.tedlium import MAX_SPK_SECONDS, WAV_CMDS, prepare
from espnet_lw.utils.cli import run_main, setup_logging


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(
        prog="python -m espnet_lw.bin.prep_tedlium",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("set_dir", metavar="SET_DIR", help="TED-LIUM set dir with sph/ and stm/, e.g. TEDLIUM_release2/dev")
    p.add_argument("dst", metavar="DST_DATA_DIR", help="Kaldi-style data directory to create, e.g. data/dev")
    p.add_argument("--pad_start", type=float, default=0.0,
                   help="seconds added before each segment (ESPnet's TED-LIUM recipes: 0.15 for train)")
    p.add_argument("--pad_end", type=float, default=0.0,
                   help="seconds added after each segment (ESPnet's TED-LIUM recipes: 0.1 for train)")
    p.add_argument("--max_spk_seconds", type=float, default=MAX_SPK_SECONDS,
                   help="seconds of speech per pseudo-speaker (0: one speaker per talk)")
    p.add_argument("--wav_cmd", choices=WAV_CMDS, default="auto",
                   help="wav.scp entries: 'sph2pipe -f wav -p F |', 'sox -t sph F -t wav ... - |' or the "
                   "plain path; auto: sph2pipe if installed, else sox, else the path")
    p.add_argument("--fs", type=int, default=16000, help="sample rate asked from sox")
    p.add_argument("--overwrite", action="store_true", help="replace an existing DST_DATA_DIR")
    p.add_argument("--log_level", default="INFO", help="logging level")
    return p


def main(argv=None) -> None:
    """Entry point."""
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    prepare(args.set_dir, args.dst, pad_start=args.pad_start, pad_end=args.pad_end,
            max_spk_seconds=args.max_spk_seconds, wav_cmd=args.wav_cmd, fs=args.fs, overwrite=args.overwrite)


if __name__ == "__main__":
    run_main(main)
