"""Combine several Kaldi-style data directories into one (like Kaldi's utils/combine_data.sh).

Usage::

    python -m espnet_lw.bin.combine_data [--overwrite] DST SRC1 SRC2 [SRC3 ...]

    python -m espnet_lw.bin.combine_data data/dev data/dev_clean data/dev_other
    python -m espnet_lw.bin.combine_data data/train_960 data/train_clean_100 data/train_clean_360 data/train_other_500

Rules (fail loudly rather than guess):

* a table (``wav.scp``, ``text``, ``utt2spk``, ``segments``, ``utt2*``, ``spk2*``, ``reco2*`` ...)
  present in every source is concatenated; one present in only some sources is left out with a
  warning (``wav.scp``, ``text`` and ``utt2spk`` must be in all of them);
* ``spk2utt`` is regenerated from the combined ``utt2spk``;
* the same utterance id in two sources is an error; the same speaker or recording id is
  allowed when its value is identical (e.g. a talk in two sets), an error otherwise;
* sources with ``segments`` cannot be mixed with sources without (the recording ids would
  mean different things): an error;
* every source is validated first and the result is validated; the output is written to a
  temporary directory renamed into place, so DST is complete or absent.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Dict, List

from espnet_lw.data.kaldi_dir import (
    RECO,
    SPK,
    UTT,
    atomic_output_dir,
    check_valid_or_raise,
    list_tables,
    read_kv,
    utt2spk_to_spk2utt,
    write_kv,
)
from espnet_lw.utils.cli import UserError, run_main, setup_logging

logger = logging.getLogger(__name__)

REQUIRED = ("wav.scp", "text", "utt2spk")


def combine(dst: str | Path, srcs: List[str | Path], overwrite: bool = False) -> Dict[str, int]:
    """Combine ``srcs`` into ``dst``; returns ``{"utts": N, "speakers": M}``."""
    if len(srcs) < 1:
        raise UserError("give at least one source data directory")
    srcs = [Path(s) for s in srcs]
    dst = Path(dst)
    if any(s.resolve() == dst.resolve() for s in srcs):
        raise UserError("the destination is also a source", str(dst), "choose another DST")
    for s in srcs:
        if not s.is_dir():
            raise UserError("source data directory does not exist", str(s))
        check_valid_or_raise(s)
    seg = [(s / "segments").is_file() for s in srcs]
    if any(seg) and not all(seg):
        with_seg = [str(s) for s, h in zip(srcs, seg) if h]
        without = [str(s) for s, h in zip(srcs, seg) if not h]
        raise UserError(f"cannot combine dirs with segments ({', '.join(with_seg)}) and without "
                        f"({', '.join(without)})", str(dst),
                        "give the dirs without segments a segments file covering each whole recording")
    kinds = [list_tables(s) for s in srcs]
    names = set(kinds[0])
    for k in kinds[1:]:
        names &= set(k)
    names.discard("spk2utt")
    for name in REQUIRED:
        if name not in names:
            missing = [str(s) for s, k in zip(srcs, kinds) if name not in k]
            raise UserError(f"{name} is missing in {', '.join(missing)}", str(dst))
    dropped = sorted(set().union(*kinds) - names - {"spk2utt"})
    for name in dropped:
        logger.warning("%s is not in every source: left out of %s", name, dst)

    combined: Dict[str, Dict[str, str]] = {}
    for name in sorted(names):
        kind = kinds[0][name]
        table: Dict[str, str] = {}
        where: Dict[str, Path] = {}
        for s in srcs:
            for key, value in read_kv(s / name).items():
                if key in table:
                    if kind == UTT:
                        raise UserError(f"utterance id '{key}' is in both {where[key]} and {s}", str(s / name),
                                        "utterance ids must be unique across the combined dirs")
                    if table[key] != value:
                        what = {SPK: "speaker", RECO: "recording"}.get(kind, "key")
                        raise UserError(f"{what} '{key}' has different values in {where[key] / name} and "
                                        f"{s / name}", str(s / name))
                    continue
                table[key] = value
                where[key] = s
        combined[name] = table
    with atomic_output_dir(dst, overwrite=overwrite) as tmp:
        for name, table in combined.items():
            write_kv(tmp / name, table)
        write_kv(tmp / "spk2utt", utt2spk_to_spk2utt(combined["utt2spk"]))
        check_valid_or_raise(tmp)
    stats = {"utts": len(combined["utt2spk"]), "speakers": len(set(combined["utt2spk"].values()))}
    logger.info("combined %s -> %s: %d utterances, %d speakers", " ".join(map(str, srcs)), dst,
                stats["utts"], stats["speakers"])
    return stats


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(
        prog="python -m espnet_lw.bin.combine_data",
        description="Combine Kaldi-style data directories (utterance ids must be unique across them).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("dst", metavar="DST_DATA_DIR", help="combined data directory to create")
    p.add_argument("srcs", metavar="SRC_DATA_DIR", nargs="+", help="data directories to combine")
    p.add_argument("--overwrite", action="store_true", help="replace an existing DST_DATA_DIR")
    p.add_argument("--log_level", default="INFO", help="logging level")
    return p


def main(argv=None) -> None:
    """Entry point."""
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    combine(args.dst, args.srcs, overwrite=args.overwrite)


if __name__ == "__main__":
    run_main(main)
