"""Print the training wall time (seconds) recorded in an ESPnet ``train.log``.

    python -m espnet_lw.bin.train_time exp/asr_x/train.log [--wall SECONDS]

The time is the sum over epochs of ESPnet's own per-epoch train + valid times, so that a run
that was interrupted and resumed (``--resume true``) is counted in full, not only its last
part. With ``--wall`` the larger of the two is printed (the wall time of the last invocation
also counts model building and checkpoint averaging).
"""

from __future__ import annotations

import argparse

from espnet_lw.benchmark.timing import train_seconds


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("train_log")
    p.add_argument("--wall", type=float, default=0.0, help="wall time of the last invocation (seconds)")
    args = p.parse_args(argv)
    total = train_seconds(args.train_log) or 0.0
    print(f"{max(total, args.wall):.0f}")


if __name__ == "__main__":
    main()
