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

With ``--check_only`` (stage 4 on the dev and test sets, which are never filtered: dropping
evaluation utterances would change the scored set) nothing is written: an utterance longer than
``--max_wav_duration`` is an error that names the count and the ids, so an over-long dev or test
utterance is caught at stage 4, not as an out-of-memory in training or decoding::

    python -m espnet_lw.bin.filter_data_dir --check_only --fs 16000 --max_wav_duration 60 DUMP_DIR...

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


def check_durations(src: Path, fs: int, max_dur: float, max_listed: int = 5) -> int:
    """Raise a :class:`UserError` naming the utterances of ``src`` longer than ``max_dur`` seconds;
    return the number of utterances checked."""
    nsamp_file = src / "utt2num_samples"
    if not nsamp_file.is_file():
        raise UserError("utt2num_samples not found", str(nsamp_file),
                        "run stage 3 (python -m espnet_lw.bin.format_wav_scp) to create the dump dir first")
    nsamp = read_data_dir_tables(src).get("utt2num_samples", {})
    long = []
    for utt, n in nsamp.items():
        try:
            dur = int(n) / fs
        except ValueError:
            raise UserError(f"'{utt}': not an integer: {n!r}", str(nsamp_file), "re-run stage 3") from None
        if dur > max_dur:
            long.append((dur, utt))
    if long:
        long.sort(reverse=True)
        shown = ", ".join(f"{u} ({d:.1f}s)" for d, u in long[:max_listed]) + (", ..." if len(long) > max_listed else "")
        raise UserError(
            f"{len(long)} of {len(nsamp)} utterance(s) are longer than {max_dur:g}s: {shown}",
            str(src),
            "split or remove them in the source data dir and re-run stages 1-4, or raise the limit "
            "(--max_wav_duration here; lw.sh: --max_eval_wav_duration)",
        )
    return len(nsamp)


def get_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    p = argparse.ArgumentParser(
        prog="python -m espnet_lw.bin.filter_data_dir",
        description="Stage 4: keep utterances with min_wav_duration <= duration <= max_wav_duration "
        "(duration = utt2num_samples / fs) and a non-empty transcript; list the rest in DST/removed.txt.",
    )
    p.add_argument("src", metavar="SRC_DUMP_DIR", help="dump dir written by format_wav_scp")
    p.add_argument("dst", metavar="DST_DUMP_DIR", nargs="*",
                   help="filtered output dump dir (with --check_only: more dump dirs to check)")
    p.add_argument("--check_only", action="store_true",
                   help="write nothing: fail if an utterance of SRC (and each further dir) is longer than "
                        "--max_wav_duration (stage 4 on the dev and test sets)")
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
    if args.check_only:
        for d in [args.src, *args.dst]:
            n = check_durations(Path(d), args.fs, args.max_wav_duration)
            logging.info("%s: all %d utterances are at most %gs long", d, n, args.max_wav_duration)
        return
    if len(args.dst) != 1:
        raise UserError("give exactly one DST_DUMP_DIR (several only with --check_only)")
    args.dst = args.dst[0]
    n_kept, removed = filter_data_dir(Path(args.src), Path(args.dst), args.fs, args.min_wav_duration,
                                      args.max_wav_duration, overwrite=args.overwrite)
    counts = Counter(r.split()[0] for _, r in removed)
    detail = ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"
    logging.info("%s -> %s: kept %d, removed %d (%s); see %s", args.src, args.dst, n_kept, len(removed), detail,
                 Path(args.dst) / "removed.txt")


if __name__ == "__main__":
    run_main(main)
