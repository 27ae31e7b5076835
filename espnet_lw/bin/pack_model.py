"""Stage 14: pack a trained model with ESPnet's packer into a zip that a plain ESPnet install loads.

The zip holds the config (a `model: lw_ctc` student declared as ESPnet's CTC-only `model: espnet`),
the model file, the normalisation statistics (and the BPE model), and a README.md model card
(what it is, its parameters, the --results / --decode_dir tables, the --command that made it). Load it with

    Speech2Text(**espnet2.main_funcs.pack_funcs.unpack("model.zip", "model_dir"))

    python -m espnet_lw.bin.pack_model --asr_train_config exp/asr_x/config.yaml \\
        --asr_model_file exp/asr_x/valid.loss.ave.pth --out exp/asr_x/packed/model.zip \\
        --decode_dir exp/asr_x/decode_ctc_greedy_asr_model_valid.loss.ave --command "./run.sh --stage 11"
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from espnet_lw.utils.cli import UserError, run_main, setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--asr_train_config", required=True, help="config.yaml written by training")
    p.add_argument("--asr_model_file", required=True, help="model parameters (.pth)")
    p.add_argument("--out", required=True, help="the zip to write (…/model.zip)")
    p.add_argument("--results", help="markdown file for the model card's results section (e.g. a WER table)")
    p.add_argument("--decode_dir", help="a decoding dir scored by stage 13 (<set>/score_wer/result.txt): its WER/CER "
                                        "tables go into the model card (after --results)")
    p.add_argument("--command", help="the command that made the model (shown in the model card)")
    p.add_argument("--name", help="model name in the card and the zip (default: the config's directory name)")
    return p


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    results = None
    if args.results:
        path = Path(args.results)
        if not path.is_file():
            raise UserError("no such results file", str(path), "give a markdown file (e.g. the model's RESULTS.md)")
        results = path.read_text(encoding="utf-8")
    from espnet_lw.export.pack import pack_model, results_table

    if args.decode_dir:
        results = "\n".join(r for r in (results, results_table(args.decode_dir)) if r)

    res = pack_model(args.asr_train_config, args.asr_model_file, args.out, results=results, command=args.command,
                     name=args.name)
    logging.info("wrote %s (%.2f MB): %s", res.zip_path, res.zip_path.stat().st_size / 1e6, ", ".join(res.members))


if __name__ == "__main__":
    run_main(main)
