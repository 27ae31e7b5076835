"""Stage 13: score one decoded data set with NIST sclite (WER and CER).

Usage::

    python -m espnet_lw.bin.score_sclite --ref dump/raw/test/text \\
        --hyp exp/X/decode_Y/test/text [--utt2spk dump/raw/test/utt2spk] \\
        --out exp/X/decode_Y/test [--types wer cer] [--nlsyms FILE] [--sclite_opts "-e utf-8"]

Writes ``OUT/score_wer/{ref.trn,hyp.trn,result.txt,result.dtl}`` and the same under
``OUT/score_cer`` and prints one summary line on stdout, e.g.::

    decode_Y/test: WER 12.3 (S 8.0 D 2.1 I 2.2, 1234 words, 100 utts) | CER 5.6 (...)

Texts are scored as they are (no case folding or cleaning).  A reference utterance
without a hypothesis is an error naming the count and the first ids (a partial decode is
never scored) unless ``--allow_missing``, which counts it as deletions; hypothesis
utterances not in the reference are an error.  ``--utt2spk`` defaults to ``utt2spk`` next to ``--ref`` when it exists.
sclite is found through ``$SCLITE``, ``PATH``, ``/usr/lib/sctk/bin/sclite`` or the
``sctk`` wrapper.
"""

from __future__ import annotations

import argparse
import logging
import shlex
from pathlib import Path
from typing import Dict, List, Optional

from espnet_lw.scoring import SCORE_TYPES, ScoreSummary, read_nlsyms, score
from espnet_lw.utils.cli import run_main, setup_logging


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(
        description="Score a decoded data set with sclite (WER/CER), ESPnet asr.sh stage 13 layout.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--ref", required=True, help="reference Kaldi text (uttid WORD WORD ...)")
    p.add_argument("--hyp", required=True, help="hypothesis Kaldi text from decoding")
    p.add_argument("--out", required=True, help="output dir; gets score_<type>/ sub-directories")
    p.add_argument(
        "--utt2spk",
        default=None,
        help="utt2spk for sclite's per-speaker report; when omitted, the utt2spk next to --ref is "
        "used if it exists, otherwise every utterance is its own speaker",
    )
    p.add_argument("--types", nargs="+", choices=SCORE_TYPES, default=list(SCORE_TYPES),
                   help="which error rates to compute")
    p.add_argument("--nlsyms", default=None,
                   help="non-linguistic symbols (one per line) removed before scoring")
    p.add_argument("--sclite_opts", default="",
                   help="extra sclite options, e.g. '-e utf-8' (one shell-quoted string)")
    p.add_argument("--allow_missing", action="store_true",
                   help="score reference utterances without a hypothesis as deletions instead of refusing")
    p.add_argument("--no_detail", action="store_true",
                   help="do not write result.dtl (sclite -o dtl: confusion pairs etc.)")
    p.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def summary_line(label: str, results: Dict[str, ScoreSummary]) -> str:
    """One line like ``test: WER 12.3 (S 8.0 D 2.1 I 2.2, 1234 words, 100 utts) | CER ...``."""
    parts = []
    for score_type, s in results.items():
        unit = "words" if score_type == "wer" else "chars"
        parts.append(
            f"{score_type.upper()} {s.err:.1f} (S {s.sub:.1f} D {s.del_:.1f} I {s.ins:.1f}, "
            f"{s.wrd} {unit}, {s.snt} utts)"
        )
    return f"{label}: " + " | ".join(parts)


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point."""
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    utt2spk = args.utt2spk
    if utt2spk is None:
        guess = Path(args.ref).parent / "utt2spk"
        if guess.is_file():
            utt2spk = str(guess)
    if utt2spk is None:
        logging.info("no utt2spk: every utterance is its own speaker in sclite's report")
    types = list(dict.fromkeys(args.types))
    results = score(
        args.ref,
        args.hyp,
        args.out,
        utt2spk_path=utt2spk,
        score_types=types,
        nlsyms=read_nlsyms(args.nlsyms),
        sclite_opts=shlex.split(args.sclite_opts),
        detail=not args.no_detail,
        allow_missing=args.allow_missing,
    )
    out = Path(args.out)
    full = out.resolve()
    label = f"{full.parent.name}/{full.name}" if full.parent.name else str(full)
    for score_type in types:
        logging.info("wrote %s", out / f"score_{score_type}" / "result.txt")
    print(summary_line(label, results), flush=True)


if __name__ == "__main__":
    run_main(main)
