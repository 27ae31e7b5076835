"""Export a trained ESPnet ASR model to ONNX for the torch-free runtime (fp32 + int8).

Writes model.onnx, model.int8.onnx, tokens.txt, meta.json and parity.json into --out_dir
(format: espnet_lw.export.onnx_export). The parity check decodes the first --parity_n
utterances of --parity_scp with torch, fp32 and int8 (word error rates when a `text` file is
beside the wav.scp); without --parity_scp it uses a few synthetic signals.

    python -m espnet_lw.bin.export_onnx --asr_train_config exp/asr_x/config.yaml \\
        --asr_model_file exp/asr_x/valid.loss.ave.pth --out_dir exp/asr_x/onnx \\
        --parity_scp dump/raw/dev/wav.scp --parity_n 20
"""

from __future__ import annotations

import argparse
import logging

from espnet_lw.utils.cli import run_main, setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--asr_train_config", required=True, help="config.yaml written by training")
    p.add_argument("--asr_model_file", required=True, help="model parameters (.pth)")
    p.add_argument("--out_dir", required=True, help="directory for the exported files")
    p.add_argument("--parity_scp", help="wav.scp of the parity utterances (default: synthetic signals)")
    p.add_argument("--parity_n", type=int, default=20, help="first N utterances of --parity_scp (0: all)")
    p.add_argument("--no_int8", action="store_true", help="write only the fp32 model")
    p.add_argument("--default_precision", choices=["int8", "fp32", "auto"], default="int8",
                   help="precision the runtime uses by default (auto: int8 unless it costs > 3%% relative WER "
                        "on the parity set; needs its text file)")
    return p


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    from espnet_lw.export.onnx_export import export_model

    res = export_model(args.asr_train_config, args.asr_model_file, args.out_dir, parity_scp=args.parity_scp,
                       parity_n=args.parity_n, int8=not args.no_int8, default_precision=args.default_precision)
    meta, par = res.meta, res.meta["parity"]
    for precision, f in meta["files"].items():
        logging.info("%s: %s, %.2f MB (%.2f bytes/parameter)", precision, res.out_dir / f["file"],
                     f["bytes"] / 1e6, f["bytes_per_param"])
    fp = par["fp32_vs_torch"]
    logging.info("fp32 vs torch: max |log-prob diff| %.3g, same greedy hypotheses %d/%d",
                 fp["max_abs_diff"], fp["same_hypotheses"], fp["hypotheses"])
    if "int8_vs_fp32" in par:
        q = par["int8_vs_fp32"]
        logging.info("int8 vs fp32: max |log-prob diff| %.3g, same greedy hypotheses %d/%d",
                     q["max_abs_diff"], q["same_hypotheses"], q["hypotheses"])
    if "wer" in par:
        logging.info("WER %% on %d words: %s", par["wer"]["words"],
                     ", ".join(f"{k} {v}" for k, v in par["wer"].items() if k != "words"))
    if not par["ok"]:
        logging.warning("fp32 ONNX is not in parity with torch (see %s)", res.out_dir / "parity.json")
    logging.info("default precision: %s; wrote %s", meta["default_precision"], res.out_dir / "meta.json")


if __name__ == "__main__":
    run_main(main)
