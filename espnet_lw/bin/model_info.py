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


def count(model) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, p in model.named_parameters():
        out[name.split(".")[0]] = out.get(name.split(".")[0], 0) + p.numel()
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--asr_train_config", required=True)
    p.add_argument("--asr_model_file", required=True)
    args = p.parse_args(argv)
    for f in (args.asr_train_config, args.asr_model_file):
        if not Path(f).is_file():
            raise UserError("no such file", f, "train the model first (stage 11)")
    from espnet_lw.tasks.asr import LWASRTask

    model, train_args = LWASRTask.build_model_from_file(args.asr_train_config, args.asr_model_file, "cpu")
    parts = count(model)
    total = sum(parts.values())
    print(total)
    for name, n in sorted(parts.items()):
        print(f"{name}: {n}")
    blocks = getattr(getattr(model, "encoder", None), "encoders", None)
    if blocks is not None:
        print(f"encoder blocks: {len(blocks)}")
    print(f"float32 size: {total * 4 / 2**20:.1f} MiB")


if __name__ == "__main__":
    run_main(main)
