"""Print the size of a trained model: total parameters on the first line, then a breakdown.

    python -m espnet_lw.bin.model_info --asr_train_config exp/X/config.yaml \\
        --asr_model_file exp/X/valid.loss.ave.pth > exp/X/params.txt

The first line is the plain parameter count (read by ``make_results``); the following lines
give parameters per top-level module, the number of encoder blocks and the float32 size.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from espnet_lw.utils.cli import UserError, run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--asr_train_config", required=True)
    p.add_argument("--asr_model_file", required=True)
    return p


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    for f in (args.asr_train_config, args.asr_model_file):
        if not Path(f).is_file():
            raise UserError("no such file", f, "train the model first (stage 11)")
    from espnet_lw.tasks.asr import model_size_lines  # noqa: PLC0415 - imports ESPnet, after the checks

    print("\n".join(model_size_lines(args.asr_train_config, args.asr_model_file)))


if __name__ == "__main__":
    run_main(main)
