"""Transcribe audio with an exported model, without torch or ESPnet.

Usage::

    transcribe MODEL INPUT [INPUT ...] [--precision fp32|int8] [--threads N]
               [--decode greedy|beam] [--beam_size N] [--jsonl] [--output FILE]
               [--window_seconds S]
    python -m espnet_lw.bin.transcribe ...      (the same)

MODEL is an exported model directory (``python -m espnet_lw.bin.export_onnx``) or a .zip of it.
Each INPUT is an audio file (uttid = its stem), a directory (searched recursively for audio
files) or a Kaldi ``wav.scp`` (``uttid path`` lines). Any sample rate and channel count is
accepted (resampled to the model's rate and mixed down to mono, with a note); long recordings
are transcribed in windows of at most 20 s (--window_seconds) cut at pauses.

Prints ``uttid text`` per utterance (or, with ``--jsonl``, one JSON object with text, duration,
seconds taken and real-time factor). A file that cannot be transcribed (unreadable, empty,
silent) gets one ``ERROR:`` line on stderr naming it; the others are still transcribed and the
exit status is 1 at the end.
"""

from __future__ import annotations

import argparse
import os
import sys

# numpy's own matrix products (the mel filterbank) are small: one BLAS thread, not one per core
# spinning beside onnxruntime's --threads. Set before numpy is first imported (unless the user did).
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from espnet_lw.runtime.audio import MAX_WINDOW_SECONDS  # noqa: E402
from espnet_lw.runtime.model import DecodeOptions, load_model  # noqa: E402
from espnet_lw.runtime.transcribe import transcribe  # noqa: E402
from espnet_lw.utils.cli import UserError, run_main, setup_logging  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="transcribe",
        description="Transcribe audio files, directories or a wav.scp with an exported ONNX model "
        "(torch-free: numpy + soundfile + onnxruntime).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("model", help="exported model directory (model.onnx, model.int8.onnx, tokens.txt, "
                   "meta.json) or a .zip of it")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="audio file, directory (recursive) or Kaldi wav.scp ('uttid path' lines)")
    p.add_argument("--precision", choices=("fp32", "int8"), default=None,
                   help="which network to run (default: the model's default_precision in meta.json)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    p.add_argument("--decode", choices=("greedy", "beam"), default="greedy",
                   help="CTC decoding: best path, or prefix beam search")
    p.add_argument("--beam_size", type=int, default=10, help="beam size of --decode beam")
    p.add_argument("--jsonl", action="store_true",
                   help="write JSON lines (uttid, text, duration, seconds, rtf, path) instead of 'uttid text'")
    p.add_argument("--window_seconds", type=float, default=MAX_WINDOW_SECONDS,
                   help="longer recordings are cut at pauses into windows of at most this many seconds, decoded "
                   "one by one (memory grows with this, not with the recording)")
    p.add_argument("--output", default=None, help="write the transcripts to this file instead of stdout")
    p.add_argument("--log_level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                   help="stderr logging level (notes on resampling / mixing down are INFO)")
    return p


def _main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    if args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    if args.window_seconds < 1:
        raise UserError(f"--window_seconds must be >= 1, got {args.window_seconds}")
    model = load_model(args.model, precision=args.precision, threads=args.threads,
                       decode=DecodeOptions(args.decode, args.beam_size))
    if args.output:
        try:
            out = open(args.output, "w", encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as e:
            raise UserError(f"cannot write the output: {e.strerror}", args.output) from e
    else:
        out = sys.stdout
    try:
        failures = transcribe(model, args.inputs, out=out, jsonl=args.jsonl, max_seconds=args.window_seconds)
    finally:
        if out is not sys.stdout:
            out.close()
    if failures:
        print(f"ERROR: {failures} input(s) could not be transcribed (see above)", file=sys.stderr)
        sys.exit(1)


def main(argv=None) -> None:
    """Entry point of ``python -m espnet_lw.bin.transcribe`` and the ``transcribe`` console script."""
    run_main(_main, argv)


if __name__ == "__main__":
    main()
