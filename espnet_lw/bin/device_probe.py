"""One measurement of the device benchmark in a fresh process (started by ``espnet_lw.bin.device_benchmark``).

    python -m espnet_lw.bin.device_probe --backend onnx --model exp/device/onnx/NAME --precision int8 \\
        --threads 1 --scp test_wav.scp --latency_wav latency_5s.wav --out probe.json
    python -m espnet_lw.bin.device_probe --backend torch --model exp/asr_x/config.yaml \\
        --model_file exp/asr_x/valid.loss.ave.pth --threads 1 --scp ... --out probe.json

Writes a JSON report (load seconds, whole-path real-time factor over --scp, latency of
--latency_wav, peak resident memory, ...; see espnet_lw.benchmark.device_probe). The ONNX probe
imports neither torch nor ESPnet. --cold: load, transcribe --latency_wav once, print it, exit.
"""

from __future__ import annotations

import argparse

from espnet_lw.utils.cli import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=("onnx", "torch"), required=True)
    p.add_argument("--model", required=True, help="onnx: exported model dir; torch: training config.yaml")
    p.add_argument("--model_file", help="torch: model parameters (.pth)")
    p.add_argument("--precision", choices=("fp32", "int8"), help="onnx: which network file")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--scp", help="test set wav.scp ('uttid path' lines)")
    p.add_argument("--latency_wav", help="the file whose latency is measured")
    p.add_argument("--latency_runs", type=int, default=20)
    p.add_argument("--hyp_out", help="write the test set's 'uttid text' lines here")
    p.add_argument("--out", help="the JSON report (default: stdout)")
    p.add_argument("--cold", action="store_true", help="load, transcribe --latency_wav once, print it, exit")
    return p


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    from espnet_lw.benchmark.device_probe import ProbeArgs, run_probe

    run_probe(ProbeArgs(**vars(args)))


if __name__ == "__main__":
    run_main(main)
