"""Stage 10: feature statistics (for global MVN) and shape files, with ESPnet's own code.

:func:`collect_stats` splits the training and validation utterances into ``nj`` key lists (fewer for
a small training set: :data:`MIN_UTTS_PER_JOB`), runs
ESPnet's trainer (``python -m espnet_lw.bin.asr_train``) in ``--collect_stats true`` mode on each
part in parallel, merges the parts with ``espnet2.bin.aggregate_stats_dirs`` and finally writes
``text_shape.<token_type>`` (token lengths + vocabulary size), the shape files the training stage
sorts batches by.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Sequence

from espnet_lw.utils.cli import UserError, setup_logging
from espnet_lw.utils.jobs import n_jobs

logger = logging.getLogger(__name__)


def data_files(rest: Sequence[str], flag: str) -> List[str]:
    """Values of a repeated ``flag path,name,type`` option in the trainer arguments."""
    out = []
    for i, a in enumerate(rest):
        if a == flag and i + 1 < len(rest):
            out.append(rest[i + 1].split(",")[0])
    return out


MIN_UTTS_PER_JOB = 200  # a statistics job gets at least this many training utterances (n_jobs)


def split_keys(scp: Path, nj: int, out_dir: Path, min_per_part: int = 1) -> List[Path]:
    """Write the keys of ``scp`` into at most ``nj`` roughly equal key files of at least ``min_per_part``
    keys each (one file when there are fewer)."""
    keys = [ln.split(maxsplit=1)[0] for ln in scp.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not keys:
        raise UserError("no utterances", str(scp), "run stages 1-4 first")
    nj = n_jobs(len(keys), nj, min_per_part)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    for j in range(nj):
        part = out_dir / f"keys.{j + 1}.scp"
        part.write_text("".join(f"{k} \n" for k in keys[j::nj]), encoding="utf-8")
        parts.append(part)
    return parts


def _env_one_thread() -> dict:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def collect_stats(output_dir: Path, nj: int, token_type: str, token_list: str, trainer_args: Sequence[str]) -> Path:
    """Run the statistics collection into ``output_dir``; the path of the training feats_stats.npz.

    ``trainer_args``: ``espnet2.bin.asr_train`` options handed on unchanged (data paths, config,
    bpemodel ...); ``--train_data_path_and_name_and_type`` and ``--valid_...`` are required.
    """
    rest = list(trainer_args)
    out = Path(output_dir)
    logdir = out / "logdir"
    train_scp = data_files(rest, "--train_data_path_and_name_and_type")
    valid_scp = data_files(rest, "--valid_data_path_and_name_and_type")
    if not train_scp or not valid_scp:
        raise UserError("--train_data_path_and_name_and_type and --valid_data_path_and_name_and_type are required")
    for f in train_scp + valid_scp:
        if not Path(f).is_file():
            raise UserError("no such data file", f, "run stages 1-4 first")
    train_parts = split_keys(Path(train_scp[0]), nj, logdir / "train_keys", MIN_UTTS_PER_JOB)
    valid_parts = split_keys(Path(valid_scp[0]), len(train_parts), logdir / "valid_keys")
    nj = min(len(train_parts), len(valid_parts))

    procs = []
    for j in range(nj):
        cmd = [
            sys.executable, "-m", "espnet_lw.bin.asr_train", "--collect_stats", "true",
            "--ngpu", "0", "--num_workers", "0", "--batch_size", "1", "--batch_type", "unsorted",
            "--use_preprocessor", "true", "--token_type", token_type, "--token_list", token_list,
            "--train_shape_file", str(train_parts[j]), "--valid_shape_file", str(valid_parts[j]),
            "--output_dir", str(logdir / f"stats.{j + 1}"),
        ] + rest + ["--normalize", "none"]
        log = open(logdir / f"stats.{j + 1}.log", "w", encoding="utf-8")
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env_one_thread()), log))
    logger.info("collecting statistics with %d jobs, logs: %s/stats.*.log", nj, logdir)
    failed = []
    for j, (p, log) in enumerate(procs):
        if p.wait() != 0:
            failed.append(logdir / f"stats.{j + 1}.log")
        log.close()
    if failed:
        tail = "\n".join(Path(failed[0]).read_text(encoding="utf-8").splitlines()[-15:])
        raise UserError(f"statistics collection failed; last lines:\n{tail}", str(failed[0]))

    from espnet2.bin.aggregate_stats_dirs import aggregate_stats_dirs  # noqa: PLC0415 - slow, after the jobs

    root = logging.getLogger()
    level = root.level
    aggregate_stats_dirs(
        input_dir=[logdir / f"stats.{j + 1}" for j in range(nj)],
        output_dir=out,
        log_level="WARNING",
        skip_sum_stats=False,
    )
    setup_logging(level)  # aggregate_stats_dirs reconfigures logging
    vocab = len(Path(token_list).read_text(encoding="utf-8").splitlines())
    for mode in ("train", "valid"):
        src = out / mode / "text_shape"
        dst = out / mode / f"text_shape.{token_type}"
        lines = [f"{ln},{vocab}\n" for ln in src.read_text(encoding="utf-8").splitlines() if ln.strip()]
        dst.write_text("".join(lines), encoding="utf-8")
    logger.info("statistics: %s", out / "train" / "feats_stats.npz")
    return out / "train" / "feats_stats.npz"
