"""Train an ASR model with ESPnet's trainer, with espnet-lw's model classes available.

Takes exactly the options of ``python -m espnet2.bin.asr_train`` (run with ``--help`` to list
them); the difference is that ``model: lw_ctc`` (and later espnet-lw models) can be named in
the YAML config. The stage driver (egs2/TEMPLATE/lw1/lw.sh, stage 11) calls it.
"""

from __future__ import annotations

import sys

from espnet_lw.tasks.asr import LWASRTask


def main(cmd=None) -> None:
    """Run ESPnet's ASR training main loop."""
    import torch

    # Tiny gradients and Adam moments turn into subnormal floats after a few hundred steps;
    # on x86 CPUs every operation on them is many times slower. Flushing them to zero changes
    # nothing measurable in training and keeps CPU epochs at a steady speed.
    torch.set_flush_denormal(True)
    LWASRTask.main(cmd=cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
