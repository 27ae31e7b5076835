"""Stage 12: CTC decoding of a data set with a trained ESPnet/espnet-lw model.

Two decoders, chosen with ``decoding:`` in the ``--config`` YAML (conf/decode_ctc_*.yaml):

* ``greedy``: best path, batched (argmax per frame, merge repeats, drop blanks);
* ``beam``: CTC prefix beam search (frame-synchronous, ``espnet_lw.decoding``), batched
  encoder, no LM.

The model is loaded with ESPnet's ``Speech2Text`` (so any ESPnet ASR model works, plus
espnet-lw's classes). Outputs in ``--output_dir``: ``text`` (uttid words), ``token``,
``token_int`` and ``decode.log`` with the real-time factor. Utterances are split over
``--nj`` processes (fewer for a small set: ``--min_utts_per_job``).

    python -m espnet_lw.bin.asr_inference --config conf/decode_ctc_greedy.yaml \\
        --asr_train_config exp/asr_x/config.yaml --asr_model_file exp/asr_x/valid.loss.ave.pth \\
        --data_path_and_name_and_type dump/raw/test/wav.scp,speech,sound --output_dir exp/asr_x/decode/test
"""

from __future__ import annotations

import argparse

from espnet_lw.inference import MIN_UTTS_PER_JOB, run_inference
from espnet_lw.utils.cli import run_main, setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="decoding YAML (keys: decoding, batch_size, beam_size)")
    p.add_argument("--asr_train_config", required=True, help="config.yaml written by training")
    p.add_argument("--asr_model_file", required=True, help="model parameters (.pth)")
    p.add_argument("--data_path_and_name_and_type", required=True, help="wav.scp,speech,sound")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--nj", type=int, default=1, help="parallel decoding processes (at most)")
    p.add_argument("--min_utts_per_job", type=int, default=MIN_UTTS_PER_JOB,
                   help="fewer processes than --nj when each would get fewer utterances than this: starting "
                        "one costs more than decoding a few [%(default)s]")
    p.add_argument("--ngpu", type=int, default=0, help="1: decode on the GPU (then --nj 1)")
    p.add_argument("--decoding", choices=["greedy", "beam"], help="overrides the config")
    p.add_argument("--beam_size", type=int, help="overrides the config")
    p.add_argument("--batch_size", type=int, help="overrides the config (greedy only)")
    return p


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    run_inference(args)


if __name__ == "__main__":
    run_main(main)
