"""Stage 10: feature statistics (for global MVN) and shape files, with ESPnet's own code.

Splits the training and validation utterances into ``--nj`` key lists, runs ESPnet's trainer
in ``--collect_stats true`` mode on each part in parallel, merges the parts with
``espnet2.bin.aggregate_stats_dirs`` and finally writes ``text_shape.<token_type>`` (token
lengths + vocabulary size), the shape files the training stage sorts batches by.

    python -m espnet_lw.bin.collect_stats --nj 2 --output_dir exp/asr_stats_raw_bpe256 \\
        --config conf/reference_mini.yaml [any espnet2.bin.asr_train option ...]

Everything after the known options is handed to the trainer unchanged (data paths, token
list, bpemodel ...).
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

from espnet_lw.utils.cli import UserError, run_main, setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nj", type=int, default=2, help="parallel collect_stats jobs")
    p.add_argument("--output_dir", required=True, help="statistics directory (train/ and valid/ inside)")
    p.add_argument("--token_type", default="bpe")
    p.add_argument("--token_list", required=True)
    return p


def data_files(rest: list[str], flag: str) -> list[str]:
    """Values of a repeated ``flag path,name,type`` option in the trainer arguments."""
    out = []
    for i, a in enumerate(rest):
        if a == flag and i + 1 < len(rest):
            out.append(rest[i + 1].split(",")[0])
    return out


def split_keys(scp: Path, nj: int, out_dir: Path) -> list[Path]:
    """Write the keys of ``scp`` into ``nj`` roughly equal key files."""
    keys = [ln.split(maxsplit=1)[0] for ln in scp.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not keys:
        raise UserError("no utterances", str(scp), "run stages 1-4 first")
    nj = max(1, min(nj, len(keys)))
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    for j in range(nj):
        part = out_dir / f"keys.{j + 1}.scp"
        part.write_text("".join(f"{k} \n" for k in keys[j::nj]), encoding="utf-8")
        parts.append(part)
    return parts


def main(argv=None) -> None:
    args, rest = get_parser().parse_known_args(argv)
    setup_logging()
    out = Path(args.output_dir)
    logdir = out / "logdir"
    train_scp = data_files(rest, "--train_data_path_and_name_and_type")
    valid_scp = data_files(rest, "--valid_data_path_and_name_and_type")
    if not train_scp or not valid_scp:
        raise UserError("--train_data_path_and_name_and_type and --valid_data_path_and_name_and_type are required")
    for f in train_scp + valid_scp:
        if not Path(f).is_file():
            raise UserError("no such data file", f, "run stages 1-4 first")
    train_parts = split_keys(Path(train_scp[0]), args.nj, logdir / "train_keys")
    valid_parts = split_keys(Path(valid_scp[0]), args.nj, logdir / "valid_keys")
    nj = min(len(train_parts), len(valid_parts))

    procs = []
    for j in range(nj):
        cmd = [
            sys.executable, "-m", "espnet_lw.bin.asr_train", "--collect_stats", "true",
            "--ngpu", "0", "--num_workers", "0", "--batch_size", "1", "--batch_type", "unsorted",
            "--use_preprocessor", "true", "--token_type", args.token_type, "--token_list", args.token_list,
            "--train_shape_file", str(train_parts[j]), "--valid_shape_file", str(valid_parts[j]),
            "--output_dir", str(logdir / f"stats.{j + 1}"),
        ] + rest + ["--normalize", "none"]
        log = open(logdir / f"stats.{j + 1}.log", "w", encoding="utf-8")
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env_one_thread()), log))
    logging.info("collecting statistics with %d jobs, logs: %s/stats.*.log", nj, logdir)
    failed = []
    for j, (p, log) in enumerate(procs):
        if p.wait() != 0:
            failed.append(logdir / f"stats.{j + 1}.log")
        log.close()
    if failed:
        tail = "\n".join(Path(failed[0]).read_text(encoding="utf-8").splitlines()[-15:])
        raise UserError(f"statistics collection failed; last lines:\n{tail}", str(failed[0]))

    from espnet2.bin.aggregate_stats_dirs import aggregate_stats_dirs

    aggregate_stats_dirs(
        input_dir=[logdir / f"stats.{j + 1}" for j in range(nj)],
        output_dir=out,
        log_level="WARNING",
        skip_sum_stats=False,
    )
    setup_logging()  # aggregate_stats_dirs reconfigures logging
    vocab = len(Path(args.token_list).read_text(encoding="utf-8").splitlines())
    for mode in ("train", "valid"):
        src = out / mode / "text_shape"
        dst = out / mode / f"text_shape.{args.token_type}"
        lines = [f"{ln},{vocab}\n" for ln in src.read_text(encoding="utf-8").splitlines() if ln.strip()]
        dst.write_text("".join(lines), encoding="utf-8")
    logging.info("statistics: %s", out / "train" / "feats_stats.npz")


def _env_one_thread() -> dict:
    import os

    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


if __name__ == "__main__":
    run_main(main)
