"""Stage 3: materialise every utterance of a data dir as a 16-bit PCM audio file.

Usage::

    python -m espnet_lw.bin.format_wav_scp [--fs 16000] [--audio_format flac|wav] [--nj 2]
        [--resample false] [--channel N] [--overwrite false] [--absolute_paths false]
        SRC_DATA_DIR DST_DUMP_DIR

ESPnet's ``sound`` reader opens plain audio files only, so this tool reads
each ``wav.scp`` entry -- a file path (anything libsndfile reads: WAV, FLAC,
NIST SPHERE with PCM samples, ...) or a shell pipe ``cmd |`` whose stdout is
WAV -- cuts the ``segments`` (start/end in seconds) when there are any, and
writes ``DST/data/<uttid>.<fmt>`` (16-bit PCM, mono).  Also written:
``DST/wav.scp``, ``DST/utt2num_samples``, ``DST/feats_type`` (``raw``),
``DST/audio_format``, and the source's ``text``, ``utt2spk``, ``spk2utt``,
``utt2*`` and ``spk2*`` tables restricted to the formatted utterances
(``segments``, ``utt2dur``, ``reco2*``, ``feats.scp``... are not copied:
``utt2num_samples`` replaces them).

Paths in ``DST/wav.scp``
    ``<DST_DUMP_DIR as given>/data/<uttid>.<fmt>``: when DST_DUMP_DIR is
    given relative (``dump/raw/train``, as asr.sh does from the recipe
    directory) the paths are relative to the current directory, exactly like
    ESPnet's own dump directories -- they keep working as long as tools run
    from the recipe directory, even if the recipe is moved.  Give an absolute
    DST_DUMP_DIR or ``--absolute_paths true`` to get absolute paths that work
    from any directory.

Decisions (fail loudly rather than guess; the work is done by
:func:`espnet_lw.data.formatting.format_wav_scp`):

* multi-channel audio is an error unless ``--channel N`` (0-based) is given
  (mono audio is always used as is, so a corpus mixing mono and stereo files
  works with ``--channel``);
* a sample rate other than ``--fs`` is an error naming the file unless
  ``--resample true`` (torchaudio's sinc resampler when available, else an
  FFT resampler in numpy); nothing is resampled silently;
* corrupt / unreadable / empty audio, a failing pipe (run with bash
  ``pipefail``), or a segment starting after or ending more than 10 ms after
  the end of its recording is an error naming the utterance and the source;
  overshoots up to 10 ms are clipped to the end of the recording;
* everything is written to a hidden temporary directory next to DST which is
  renamed to DST at the end (removed on error/Ctrl-C); an existing DST is
  only replaced with ``--overwrite true``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from espnet_lw.data.formatting import format_wav_scp
from espnet_lw.utils.cli import UserError, run_main, setup_logging, str2bool


def threading_is_main() -> bool:
    """True in the main thread (signal handlers can only be installed there)."""
    return threading.current_thread() is threading.main_thread()


def get_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    p = argparse.ArgumentParser(
        prog="python -m espnet_lw.bin.format_wav_scp",
        description="Stage 3: write every utterance of SRC_DATA_DIR (wav.scp files or 'cmd |' pipes, "
        "cut by segments) as a 16-bit PCM file DST_DUMP_DIR/data/<uttid>.<fmt>, plus wav.scp, "
        "utt2num_samples, feats_type, audio_format and the text/speaker tables.",
    )
    p.add_argument("src", metavar="SRC_DATA_DIR", help="Kaldi data dir with wav.scp (and optionally segments)")
    p.add_argument("dst", metavar="DST_DUMP_DIR", help="output dump dir, e.g. dump/raw/train "
                   "(wav.scp paths are written as <DST_DUMP_DIR>/data/<uttid>.<fmt>)")
    p.add_argument("--fs", type=int, default=16000, help="expected sample rate in Hz (default 16000)")
    p.add_argument("--audio_format", default="flac", choices=["flac", "wav"], help="output format (default flac)")
    p.add_argument("--nj", type=int, default=2, help="number of worker processes (default 2)")
    p.add_argument("--resample", type=str2bool, default=False,
                   help="true: resample audio whose rate differs from --fs; false (default): error")
    p.add_argument("--channel", type=int, default=None,
                   help="0-based channel to keep from multi-channel audio; mono audio is used as is "
                   "(default: multi-channel audio is an error)")
    p.add_argument("--overwrite", type=str2bool, default=False, help="replace an existing DST_DUMP_DIR (default false)")
    p.add_argument("--absolute_paths", type=str2bool, default=False,
                   help="write absolute paths in DST/wav.scp (default false: as DST_DUMP_DIR was given)")
    p.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv=None) -> None:
    """Entry point; see the module docstring."""
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    if threading_is_main():
        # make "kill" clean up the temporary output directory like Ctrl-C does
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.fs <= 0:
        raise UserError(f"--fs must be positive, got {args.fs}")
    if args.channel is not None and args.channel < 0:
        raise UserError(f"--channel must be >= 0, got {args.channel}")
    n = format_wav_scp(
        Path(args.src), Path(args.dst), fs=args.fs, audio_format=args.audio_format, nj=max(1, args.nj),
        resample_audio=args.resample, channel=args.channel, overwrite=args.overwrite,
        absolute_paths=args.absolute_paths,
    )
    logging.info("%s -> %s: %d utterances written as %s at %d Hz", args.src, args.dst, n, args.audio_format, args.fs)


if __name__ == "__main__":
    run_main(main)
