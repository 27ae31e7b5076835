"""Stage 10: feature statistics (for global MVN) and shape files, with ESPnet's own code.

Splits the training and validation utterances into ``--nj`` key lists, runs ESPnet's trainer
in ``--collect_stats true`` mode on each part in parallel, merges the parts with
``espnet2.bin.aggregate_stats_dirs`` and finally writes ``text_shape.<token_type>`` (token
lengths + vocabulary size), the shape files the training stage sorts batches by.

    python -m espnet_lw.bin.collect_stats --nj 2 --output_dir exp/asr_stats_raw_bpe256 \\
        --config conf/reference_mini.yaml [any espnet2.bin.asr_train option ...]

Everything after the known options is handed to the trainer unchanged (data paths, token
list, bpemodel ...). The job itself: espnet_lw/tasks/collect_stats.py.
"""

from __future__ import annotations

import argparse

from espnet_lw.tasks.collect_stats import collect_stats
from espnet_lw.utils.cli import run_main, setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nj", type=int, default=2, help="parallel collect_stats jobs")
    p.add_argument("--output_dir", required=True, help="statistics directory (train/ and valid/ inside)")
    p.add_argument("--token_type", default="bpe")
    p.add_argument("--token_list", required=True)
    return p


def main(argv=None) -> None:
    args, rest = get_parser().parse_known_args(argv)
    setup_logging()
    collect_stats(args.output_dir, args.nj, args.token_type, args.token_list, rest)


if __name__ == "__main__":
    run_main(main)
