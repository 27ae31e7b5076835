"""Check (and optionally repair) a Kaldi-style data directory.

Usage::

    python -m espnet_lw.bin.validate_data_dir [--fix] [--no_text] [--no_wav]
        [--case upper|lower | --same_case_as TRAIN_DIR] DIR

Exit status 0 when the directory is valid (after fixing, with ``--fix``),
1 otherwise; each problem is printed on one line starting with the file it
concerns.  ``--fix`` sorts every table, removes duplicates, keeps only the
utterances present in all utterance-keyed files (dropping empty transcripts
and bad segments), regenerates ``spk2utt`` and saves the originals in
``DIR/.backup/``.

Transcripts: a carriage return (CRLF line ends) is an error (``--fix`` removes
it); so are transcripts that mix upper- and lower-case utterances, and with
``--case upper|lower`` (or ``--same_case_as TRAIN_DIR``: the case of that
directory's transcripts, as stage 1 checks the dev and test sets against the
training set) any transcript of the other case: the token list and the scoring
are case-sensitive, so such a set would silently mis-score. ``--fix --case C``
converts the transcripts to case C (tags like ``<unk>`` kept) and logs how many
changed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from espnet_lw.data.kaldi_dir import CASES, dominant_case, fix_data_dir, validate_data_dir
from espnet_lw.utils.cli import UserError, run_main, setup_logging


def get_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    p = argparse.ArgumentParser(
        prog="python -m espnet_lw.bin.validate_data_dir",
        description="Validate a Kaldi-style data directory (wav.scp, text, utt2spk, spk2utt, "
        "segments, ...). Exits 1 and lists the problems if it is not valid.",
    )
    p.add_argument("data_dir", metavar="DIR", help="data directory to check")
    p.add_argument("--fix", action="store_true", help="repair the directory in place first "
                   "(originals are saved in DIR/.backup/)")
    p.add_argument("--no_text", action="store_true", help="do not require a 'text' file")
    p.add_argument("--no_wav", action="store_true", help="do not require a 'wav.scp' file")
    p.add_argument("--case", choices=CASES, default=None,
                   help="every transcript must be in this case (with --fix: convert them to it)")
    p.add_argument("--same_case_as", metavar="TRAIN_DIR", default=None,
                   help="every transcript must be in the case of TRAIN_DIR's transcripts (e.g. the training set)")
    p.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv=None) -> None:
    """Entry point; see the module docstring."""
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    case = args.case
    if args.same_case_as is not None:
        if case is not None:
            raise UserError("give --case or --same_case_as, not both")
        if not os.path.isdir(args.same_case_as):
            raise UserError("--same_case_as: not a directory", args.same_case_as)
        case = dominant_case(args.same_case_as)
        if case not in CASES:  # no letters, or a cased corpus ("Mixed Case"): only the mix check applies
            case = None
        logging.info("%s: transcripts must be in %s case (as in %s)", args.data_dir, case or "one", args.same_case_as)
    if args.fix:
        report = fix_data_dir(args.data_dir, no_text=args.no_text, case=case)
        for line in report.summary():
            logging.info("%s: %s", args.data_dir, line.strip())
        if report.kept == 0:
            raise UserError("no utterance left after fixing", args.data_dir,
                            "check the problems listed above; originals are in .backup/")
    problems = validate_data_dir(args.data_dir, no_text=args.no_text, no_wav=args.no_wav, case=case)
    if problems:
        print(f"ERROR: {args.data_dir}: {len(problems)} problem(s):", file=sys.stderr)
        for prob in problems:
            print(f"  {prob}", file=sys.stderr)
        if not args.fix:
            case_opt = f" --case {case}" if case else ""
            print(f"  fix: python -m espnet_lw.bin.validate_data_dir --fix{case_opt} {args.data_dir}", file=sys.stderr)
        sys.exit(1)
    logging.info("%s: OK", args.data_dir)


if __name__ == "__main__":
    run_main(main)
