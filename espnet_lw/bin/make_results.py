"""Stage 13 (end): collect sclite results into an ESPnet-style ``RESULTS.md``.

Usage::

    python -m espnet_lw.bin.make_results --exp_dir exp [--out RESULTS.md] \\
        [--command "./run.sh --stage 1"] [--stage_times exp/stage_times.tsv] \\
        [--title "mini_synth lw1"] [--date 2025-01-01] [--hardware "1x H100"]

Scans ``EXP_DIR/*/decode_*/*/score_{wer,cer}/result.txt`` (the layout written by
``python -m espnet_lw.bin.score_sclite``) and writes:

* ``# RESULTS`` with an *Environments* section: date, OS, python, torch, espnet and
  espnet_lw versions, the git commit of the repository holding ``--out`` (and
  whether it had uncommitted changes), CPU and GPU;
* the command that last wrote the file (``--command``);
* a table of stage wall times from ``--stage_times`` (TSV lines
  ``stage<TAB>description<TAB>seconds<TAB>status``; default
  ``EXP_DIR/stage_times.tsv``, skipped with a warning when missing);
* for every model directory ``## <exp dir>/<model>``, the command that trained it
  (``run_command.txt``, written by the stage driver) and its parameter count when
  ``params.txt`` or ``num_params.txt`` exists there, then ``### WER`` and
  ``### CER`` tables with one row per ``decode_*/<dataset>``::

      |dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|
      |---|---|---|---|---|---|---|---|---|
      |decode_asr/test|100|1234|90.1|7.8|2.1|1.2|11.1|55.0|

Rates are sclite's ``Sum/Avg`` percentages with one decimal.  Rows and sections are
sorted by name, so the file depends only on the inputs (and the date; pass
``--date`` to pin it).  The work is done by :mod:`espnet_lw.results`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

from espnet_lw.results import write_results
from espnet_lw.utils.cli import run_main, setup_logging


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(
        description="Write an ESPnet-style RESULTS.md from exp/*/decode_*/*/score_{wer,cer}/result.txt.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--exp_dir", default="exp", help="experiment root to scan")
    p.add_argument("--out", default="RESULTS.md", help="markdown file to write")
    p.add_argument("--command", default=None, help="the command that produced the results")
    p.add_argument("--stage_times", default=None,
                   help="stage wall-time TSV (stage, description, seconds, status); "
                   "default: EXP_DIR/stage_times.tsv if it exists")
    p.add_argument("--title", default=None, help="a line of text under the '# RESULTS' heading")
    p.add_argument("--date", default=None,
                   help="date to print (default: now, 'YYYY-MM-DD HH:MM:SS TZ'); pin it for reproducible files")
    p.add_argument("--hardware", default=None,
                   help="free text about the machine the models ran on, if not this one")
    p.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point."""
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    write_results(
        Path(args.exp_dir),
        Path(args.out),
        command=args.command,
        stage_times_path=Path(args.stage_times) if args.stage_times else None,
        title=args.title,
        date=args.date,
        hardware=args.hardware,
    )


if __name__ == "__main__":
    run_main(main)
