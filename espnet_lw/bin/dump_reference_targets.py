"""Run the frozen reference once per utterance and cache its outputs for EncRL training.

    python -m espnet_lw.bin.dump_reference_targets \\
        --reference_config exp/asr_reference/config.yaml \\
        --reference_model exp/asr_reference/valid.loss.ave.pth \\
        --data_dir dump/raw/train --output_dir dump/ref_targets/train [--what enc,logp|enc] [--nj 1]

Writes kaldiio ark/scp files that ESPnet's data loader reads as optional inputs of the
``lw_encrl`` model::

    DIR/ref_enc.scp   (T' x D reference encoder output per utterance, float32)
    DIR/ref_logp.scp  (T' x V CTC log-posteriors of the reference's head, Kaldi's 2-byte compressed
                       matrix; the targets of the kd student mode)
    DIR/info.yaml     (reference files' paths/sizes/mtimes/sha256, data dir + a sha256 of its wav.scp,
                       text, utt2num_samples and segments, timing, complete flag)

and are given to the trainer as ``--train_data_path_and_name_and_type DIR/ref_enc.scp,ref_enc,kaldi_ark``
(EncRL; ``model_conf.reference_cache: DIR`` makes the model refuse a stale or unfinished cache) or
``DIR/ref_logp.scp,ref_logp,kaldi_ark`` (KD). Both come from the same one pass (``--what enc,logp``,
the default); EncRL's own ``mse: {target: ctc_logp}`` derives the log-posteriors from ``ref_enc``
with the reference's linear head instead.

Utterances are run one at a time by default: ESPnet's conv2d subsampling counts output frames
from the padded batch length and its conv modules see the padding, so batched targets would depend
on the batch an utterance happened to land in (``--batch_seconds S`` batches anyway, faster on a
GPU; the model compares the frames both sides have, within ``cache_length_tolerance``). The run resumes
where it stopped (per-job ark/scp under DIR/split/ are appended to, finished utterances are
skipped); a finished cache is left alone, and a cache made for another reference, data dir or data
(the data dir's contents changed: re-filtered, re-made) or one without a requested target (older
caches hold enc only) is refused unless ``--overwrite true`` (the old directory is moved aside, never
deleted, and the cache is made again).
The job itself: espnet_lw/models/targets.py.
"""

from __future__ import annotations

import argparse

from espnet_lw.models.targets import dump_reference_targets
from espnet_lw.utils.cli import run_main, setup_logging, str2bool


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m espnet_lw.bin.dump_reference_targets",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--reference_config", required=True, help="the reference's ESPnet config.yaml")
    p.add_argument("--reference_model", required=True, help="the reference's model file (.pth)")
    p.add_argument("--data_dir", required=True, help="data dir with wav.scp (e.g. dump/raw/train)")
    p.add_argument("--output_dir", required=True, help="where the ark/scp files and info.yaml go")
    p.add_argument("--what", default="enc,logp", help="comma-separated subset of enc,logp [enc,logp]")
    p.add_argument("--nj", type=int, default=1, help="parallel processes [1]")
    p.add_argument("--num_threads", type=int, default=1, help="torch threads per process [1]")
    p.add_argument("--device", default="cpu", help="cpu or cuda (with --nj N: cuda:0..N-1 round robin) [cpu]")
    p.add_argument("--batch_seconds", type=float, default=0.0,
                   help="seconds of (padded) audio per batch; 0: one utterance at a time, which makes the "
                        "targets independent of batching (ESPnet's subsampling and conv modules see the padding) [0]")
    p.add_argument("--overwrite", type=str2bool, default=False,
                   help="move an existing cache that does not fit aside (DIR.old.<time>) and start again [false]")
    p.add_argument("--log_level", default="INFO")
    return p


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    dump_reference_targets(
        args.reference_config, args.reference_model, args.data_dir, args.output_dir, what=args.what,
        nj=args.nj, num_threads=args.num_threads, device=args.device, batch_seconds=args.batch_seconds,
        overwrite=args.overwrite, log_level=args.log_level,
    )


if __name__ == "__main__":
    run_main(main)
