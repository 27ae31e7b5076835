"""Device benchmark (issue 11): every model exported to ONNX fp32 + int8 and measured beside ESPnet's torch path.

For the trained reference and students (config.yaml + valid.loss.ave.pth under --expdir, or
--exp_dirs) and the paper-scale models (conf/reference_paper.yaml and its 6/4/2-block students,
random weights: speed and size only): size on disk, parameters, model load time, whole-path
real-time factor over the test set (audio file -> text) at each --threads, latency of one 5 s
file (median of --latency_runs), peak resident memory, cold start of `transcribe`, GFLOP/s
against numpy's one-core sgemm, and test WER (sclite) of torch / fp32 / int8 with int8's
relative cost. Each measurement runs in a fresh process.

Writes <out_dir>/device.json, device.md, wer_vs_rtf.png (probe reports and logs under
<out_dir>/probes, exports under <out_dir>/onnx), and unless --write_results false: the
<!-- device:begin/end --> section of RESULTS.md, "device" in benchmark.json (other keys kept)
and device_wer_vs_rtf.png beside RESULTS.md. Prints the section.

    python -m espnet_lw.bin.device_benchmark --recipe_dir egs2/mini_synth/lw1
    python -m espnet_lw.bin.device_benchmark --recipe_dir . --limit 5 --paper_models false \\
        --latency_runs 3 --write_results false --out_dir exp/device_quick
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from espnet_lw.utils.cli import run_main, setup_logging, str2bool


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe_dir", default=".", help="the recipe directory (paths below are relative to it)")
    p.add_argument("--expdir", default="exp", help="where the trained models are (asr_*/)")
    p.add_argument("--exp_dirs", nargs="*", default=[], help="these exp dirs instead of every model under --expdir")
    p.add_argument("--model_file", default="valid.loss.ave.pth", help="checkpoint name in each exp dir")
    p.add_argument("--dumpdir", default="dump", help="test data: <dumpdir>/raw/<test_set>/{wav.scp,text,utt2spk}")
    p.add_argument("--test_set", default="test")
    p.add_argument("--parity_set", default="dev", help="the export's parity utterances ('' for synthetic ones)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (the first one is the "
                   "reference for speed-up, latency, memory and GFLOP/s)")
    p.add_argument("--latency_runs", type=int, default=20)
    p.add_argument("--latency_seconds", type=float, default=5.0, help="length of the latency / cold-start file")
    p.add_argument("--cold_runs", type=int, default=3, help="cold starts per model and backend (0: none)")
    p.add_argument("--paper_models", type=str2bool, default=True, help="also the paper-scale models (untrained)")
    p.add_argument("--paper_config", default="conf/reference_paper.yaml")
    p.add_argument("--backends", nargs="+", default=["torch", "fp32", "int8"], choices=["torch", "fp32", "int8"])
    p.add_argument("--limit", type=int, default=0, help="only the first N test utterances (0: all; quick runs)")
    p.add_argument("--paper_limit", type=int, default=0,
                   help="time the paper-scale models (untrained: speed and size only) on the first N test utterances "
                        "(0: as --limit); their speed does not depend on which utterances")
    p.add_argument("--out_dir", default="exp/device")
    p.add_argument("--write_results", type=str2bool, default=True,
                   help="write RESULTS.md's device section and benchmark.json's device key")
    p.add_argument("--results", default="RESULTS.md", help="the RESULTS.md to update (relative to --recipe_dir)")
    p.add_argument("--command", default=None, help="the command to record (default: this one)")
    return p


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = get_parser().parse_args(argv)
    setup_logging()
    from espnet_lw.benchmark.device import Options, run_device_benchmark

    opts = Options(
        recipe_dir=Path(args.recipe_dir), expdir=Path(args.expdir), exp_dirs=[Path(d) for d in args.exp_dirs],
        model_file=args.model_file, dumpdir=Path(args.dumpdir), test_set=args.test_set,
        parity_set=args.parity_set or None, threads=args.threads, latency_runs=args.latency_runs,
        latency_seconds=args.latency_seconds, cold_runs=args.cold_runs, paper_models=args.paper_models,
        paper_config=Path(args.paper_config), limit=args.limit, paper_limit=args.paper_limit,
        out_dir=Path(args.out_dir), backends=args.backends,
        write_results=args.write_results, results=args.results,
        command=args.command or shlex.join(["python", "-m", "espnet_lw.bin.device_benchmark", *argv]),
    )
    run_device_benchmark(opts)


if __name__ == "__main__":
    run_main(main)
