"""Stage 4: drop utterances that are too short, too long or have no transcript.

Usage::

    python -m espnet_lw.bin.filter_data_dir [--fs 16000] [--min_wav_duration 0.1]
        [--max_wav_duration 20] [--overwrite] SRC_DUMP_DIR DST_DUMP_DIR

An utterance is kept when ``min_wav_duration <= utt2num_samples / fs <=
max_wav_duration`` (both ends inclusive) and, if SRC has a ``text`` file, its
transcript is non-empty after stripping blanks.  ``DST`` gets every
utterance-keyed table filtered (``wav.scp`` still points to the audio files
written by stage 3 -- nothing is copied), ``spk2utt`` regenerated,
speaker-keyed tables filtered, ``feats_type``/``audio_format`` copied, and
``removed.txt`` with one line per dropped utterance::

    <uttid> <reason> <details>

where ``<reason>`` is one of ``too_short``, ``too_long``, ``empty_text``,
``no_text`` (no line in ``text``) or ``no_num_samples`` (no line in
``utt2num_samples``).  The output is built in a temporary directory and
renamed at the end; an existing DST is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from collections import Counter
from pathlib import Path
from typing import Dict, List, Tuple

from espnet_lw.data.kaldi_dir import (
    atomic_output_dir,
    atomic_write_text,
    copy_tables_subset,
    list_tables,
    read_data_dir_tables,
    sort_keys,
)
from espnet_lw.utils.cli import UserError, run_main, setup_logging

#: plain (non-table) files copied verbatim
CARRIED_FILES = ("feats_type", "audio_format")


def decide(
    tables: Dict[str, Dict[str, str]], fs: int, min_dur: float, max_dur: float, src: Path
) -> Tuple[List[str], List[Tuple[str, str]]]:
    """Return ``(kept_utts, [(utt, "reason details"), ...])``."""
    wav = tables["wav.scp"]
    nsamp = tables["utt2num_samples"]
    text = tables.get("text")
    kept: List[str] = []
    removed: List[Tuple[str, str]] = []
    for utt in sort_keys(wav):
        if utt not in nsamp:
            removed.append((utt, "no_num_samples not in utt2num_samples"))
            continue
        try:
            n = int(nsamp[utt])
        except ValueError:
            raise UserError(f"'{utt}': not an integer: {nsamp[utt]!r}", str(src / "utt2num_samples"),
                            "re-run stage 3 (format_wav_scp)") from None
        dur = n / fs
        if dur < min_dur:
            removed.append((utt, f"too_short {dur:.3f}s < {min_dur:g}s"))
        elif dur > max_dur:
            removed.append((utt, f"too_long {dur:.3f}s > {max_dur:g}s"))
        elif text is not None and utt not in text:
            removed.append((utt, "no_text not in text"))
        elif text is not None and not text[utt].strip():
            removed.append((utt, "empty_text empty transcript"))
        else:
            kept.append(utt)
    return kept, removed


def filter_data_dir(
    src: Path, dst: Path, fs: int, min_dur: float, max_dur: float, overwrite: bool = False
) -> Tuple[int, List[Tuple[str, str]]]:
    """Filter ``src`` into ``dst``; return ``(num_kept, removed)``."""
    if not src.is_dir():
        raise UserError("source dump directory does not exist", str(src))
    for name in ("wav.scp", "utt2num_samples"):
        if not (src / name).is_file():
            raise UserError(f"{name} not found", str(src / name),
                            "run stage 3 (python -m espnet_lw.bin.format_wav_scp) to create the dump dir first")
    if (dst.exists() or dst.is_symlink()) and not overwrite:
        raise UserError("output directory already exists", str(dst), "remove it or pass --overwrite")
    kinds = list_tables(src)
    tables = read_data_dir_tables(src)
    if "text" not in tables:
        logging.warning("%s: no text file; filtering on duration only", src)
    kept, removed = decide(tables, fs, min_dur, max_dur, src)
    if not kept:
        counts = Counter(r.split()[0] for _, r in removed)
        raise UserError(
            f"all {len(removed)} utterances would be removed ({dict(counts)})",
            str(src),
            f"check --fs {fs} (the data's sample rate) and --min_wav_duration/--max_wav_duration",
        )
    with atomic_output_dir(dst, overwrite=overwrite) as tmp:
        copy_tables_subset(tables, kinds, tmp, kept)
        for name in CARRIED_FILES:
            if (src / name).is_file():
                shutil.copyfile(src / name, tmp / name)
        atomic_write_text(tmp / "removed.txt", "".join(f"{u} {r}\n" for u, r in removed))
    return len(kept), removed


def get_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    p = argparse.ArgumentParser(
        prog="python -m espnet_lw.bin.filter_data_dir",
        description="Stage 4: keep utterances with min_wav_duration <= duration <= max_wav_duration "
        "(duration = utt2num_samples / fs) and a non-empty transcript; list the rest in DST/removed.txt.",
    )
    p.add_argument("src", metavar="SRC_DUMP_DIR", help="dump dir written by format_wav_scp")
    p.add_argument("dst", metavar="DST_DUMP_DIR", help="filtered output dump dir")
    p.add_argument("--fs", type=int, default=16000, help="sample rate of the dumped audio in Hz (default 16000)")
    p.add_argument("--min_wav_duration", type=float, default=0.1, help="minimum duration in seconds (default 0.1)")
    p.add_argument("--max_wav_duration", type=float, default=20.0, help="maximum duration in seconds (default 20)")
    p.add_argument("--overwrite", action="store_true", help="replace DST_DUMP_DIR if it exists")
    p.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv=None) -> None:
    """Entry point; see the module docstring."""
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    if args.fs <= 0:
        raise UserError(f"--fs must be positive, got {args.fs}")
    if args.min_wav_duration > args.max_wav_duration:
        raise UserError(f"--min_wav_duration {args.min_wav_duration} is larger than "
                        f"--max_wav_duration {args.max_wav_duration}")
    n_kept, removed = filter_data_dir(Path(args.src), Path(args.dst), args.fs, args.min_wav_duration,
                                      args.max_wav_duration, overwrite=args.overwrite)
    counts = Counter(r.split()[0] for _, r in removed)
    detail = ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"
    logging.info("%s -> %s: kept %d, removed %d (%s); see %s", args.src, args.dst, n_kept, len(removed), detail,
                 Path(args.dst) / "removed.txt")


if __name__ == "__main__":
    run_main(main)
