"""Bring your own field data into a recipe: audio + transcripts -> a checked data dir data/<name>.

    # a manifest: audio_path<TAB>transcript[<TAB>speaker] per line (paths relative to the manifest)
    python -m espnet_lw.bin.import_field_data --manifest site/manifest.tsv data/site
    # LibriSpeech layout (<spk>/<chapter>/<spk>-<chapter>-<n>.flac + *.trans.txt), or a Kaldi data dir
    python -m espnet_lw.bin.import_field_data --librispeech_dir /data/site data/site
    python -m espnet_lw.bin.import_field_data --kaldi_dir /data/site_kaldi data/site
    # split by speaker into data/site_adapt and data/site_test (30 % of the speakers to test)
    python -m espnet_lw.bin.import_field_data --manifest site/manifest.tsv --test_share 0.3 data/site

Then adapt and score:  ./run.sh --stage 16 --stop_stage 16 --adapt_set site_adapt \\
    --adapt_test_sets "site_test test" --adapt_config conf/adapt.yaml
Every problem names its file and line (missing audio, empty transcript, a line without a tab).
Library: :mod:`espnet_lw.adapt.field_data`.
"""

from __future__ import annotations

import argparse
import logging

from espnet_lw.adapt.field_data import SPEAKER_MODES, TEXT_CASES, import_field_data
from espnet_lw.utils.cli import run_main, setup_logging, str2bool


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m espnet_lw.bin.import_field_data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", help="audio_path<TAB>transcript[<TAB>speaker] lines")
    src.add_argument("--librispeech_dir", help="a directory in LibriSpeech layout")
    src.add_argument("--kaldi_dir", help="a Kaldi data dir (wav.scp, text, utt2spk)")
    p.add_argument("dst", help="the data dir to write (data/<name>)")
    p.add_argument("--speaker", choices=SPEAKER_MODES, default="utt",
                   help="manifest without a speaker column: utt (each utterance its own speaker) or dir "
                   "(the audio file's folder) [%(default)s]")
    p.add_argument("--text_case", choices=TEXT_CASES, default="keep",
                   help="case of the transcripts: match the training text (LibriSpeech-style recipes: upper)")
    p.add_argument("--test_share", type=float, help="also split by speaker into <dst>_adapt and <dst>_test, "
                   "this share of the speakers to test")
    p.add_argument("--seed", type=int, default=0, help="seed of the speaker split [%(default)s]")
    p.add_argument("--overwrite", type=str2bool, default=False, help="replace existing output dirs [false]")
    return p


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    written = import_field_data(
        args.dst, manifest=args.manifest, librispeech_dir=args.librispeech_dir, kaldi_dir=args.kaldi_dir,
        speaker=args.speaker, text_case=args.text_case, test_share=args.test_share, seed=args.seed,
        overwrite=args.overwrite,
    )
    for d in written:
        n = sum(1 for _ in open(d / "text", encoding="utf-8"))
        logging.info("%s: %d utterances: OK", d, n)


if __name__ == "__main__":
    run_main(main)
