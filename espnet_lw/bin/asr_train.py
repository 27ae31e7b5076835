"""Train an ASR model with ESPnet's trainer, with espnet-lw's model classes available.

Takes exactly the options of ``python -m espnet2.bin.asr_train`` (run with ``--help`` to list
them); the difference is that ``model: lw_ctc`` (and later espnet-lw models) can be named in
the YAML config. The stage driver (egs2/TEMPLATE/lw1/lw.sh, stage 11) calls it.

Several processes (distributed data parallel, one process per device, each with its own copy of
the model and, for EncRL, of the frozen reference):

* ``--ngpu N`` (N > 1) runs ESPnet's DDP (``--multiprocessing_distributed true`` is implied);
  ``--multiprocessing_distributed false`` with N > 1 (ESPnet's DataParallel) is refused;
* ``--cpu_procs N`` (this entry point's own option, with ``--ngpu 0``) runs the same DDP code on
  N CPU processes with the gloo backend: ESPnet spawns worker processes for GPUs only, so the
  workers are started here (each gets ``--dist_rank``, ``--dist_world_size N``, ``--dist_backend gloo``
  and a free local port) and stopped together: one failing, or the parent being stopped, ends all.

Checkpoints are saved atomically and ``lw_encrl`` gets DDP's ``unused_parameters``
(:class:`espnet_lw.tasks.trainer.LWTrainer`).

``--params_report FILE`` (this entry point's own option): once training has finished, the model of
``<output_dir>/config.yaml`` is built in this process and its size (``espnet_lw.bin.model_info``'s
lines) is written to FILE, which saves the stage driver a second process (and ESPnet's imports).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from pathlib import Path
from typing import List, Optional

from espnet_lw.tasks.asr import LWASRTask, model_size_lines
from espnet_lw.utils.cli import UserError, run_main, str2bool
from espnet_lw.utils.io import atomic_write_text


def _own_options(cmd: List[str]):
    """``(own options: cpu_procs, params_report; ESPnet's: ngpu, multiprocessing_distributed or None,
    output_dir; the command without this entry point's own options)``."""
    own = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    own.add_argument("--cpu_procs", type=int, default=1)
    own.add_argument("--params_report", default=None)
    known, rest = own.parse_known_args(cmd)
    peek = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    peek.add_argument("--ngpu", type=int, default=0)
    peek.add_argument("--multiprocessing_distributed", type=str2bool, default=None)
    peek.add_argument("--output_dir", default=None)
    seen, _ = peek.parse_known_args(rest)
    return known, seen, rest


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Linux: this process gets SIGTERM when its parent dies (no orphaned trainer after a SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _train(cmd: List[str]) -> None:
    import torch

    # Tiny gradients and Adam moments turn into subnormal floats after a few hundred steps;
    # on x86 CPUs every operation on them is many times slower. Flushing them to zero changes
    # nothing measurable in training and keeps CPU epochs at a steady speed.
    torch.set_flush_denormal(True)
    LWASRTask.main(cmd=cmd)


def _cpu_worker(rank: int, cmd: List[str], threads: Optional[int]) -> None:
    """One of ``--cpu_procs`` processes (started by ``torch.multiprocessing``, rank first)."""
    _die_with_parent()
    os.environ.pop("LOCAL_RANK", None)  # ESPnet would check it against CUDA_VISIBLE_DEVICES
    import torch

    if threads:
        torch.set_num_threads(threads)
    try:
        _train(cmd + ["--dist_rank", str(rank)])
    except UserError as e:
        print(f"ERROR: [rank {rank}] " + e.format(), file=sys.stderr)
        sys.exit(1)


def run_cpu_procs(cmd: List[str], nprocs: int) -> None:
    """Train with ``nprocs`` CPU processes (DDP, gloo); returns when all finished, raises if one failed."""
    import torch.multiprocessing as mp

    port = _free_port()
    cmd = cmd + ["--ngpu", "0", "--multiprocessing_distributed", "false", "--dist_backend", "gloo",
                 "--dist_world_size", str(nprocs), "--dist_init_method", "env://",
                 "--dist_master_addr", "127.0.0.1", "--dist_master_port", str(port)]
    threads = None if os.environ.get("OMP_NUM_THREADS") else max(1, (os.cpu_count() or 1) // nprocs)
    ctx = mp.start_processes(_cpu_worker, args=(cmd, threads), nprocs=nprocs, join=False, start_method="spawn")

    def _stop(signum, _frame):
        raise SystemExit(128 + signum)

    old = signal.signal(signal.SIGTERM, _stop)
    try:
        while not ctx.join():
            pass
    except (mp.ProcessExitedException, mp.ProcessRaisedException) as e:
        raise UserError(f"training process {e.error_index} of {nprocs} failed; the others were stopped:\n"
                        f"{str(e).strip()[-2000:]}", fix="see the log above (rank 0 logs the training)") from None
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
        for p in ctx.processes:
            p.join(timeout=30)
        signal.signal(signal.SIGTERM, old)


def write_params_report(output_dir: str, out_file: str) -> None:
    """The size lines of the model that ``output_dir/config.yaml`` describes, written atomically to
    ``out_file`` (a reader never sees a torn file)."""
    config = Path(output_dir) / "config.yaml"
    if not config.is_file():
        raise UserError("training wrote no config.yaml", str(config), "see the training log above")
    atomic_write_text(out_file, "\n".join(model_size_lines(config)) + "\n")


def main(cmd=None) -> None:
    """Run ESPnet's ASR training main loop (on several processes with ``--ngpu N`` / ``--cpu_procs N``)."""
    cmd = list(sys.argv[1:] if cmd is None else cmd)
    own, seen, cmd = _own_options(cmd)
    if own.params_report and not seen.output_dir:
        raise UserError("--params_report needs --output_dir (the model's config.yaml is read from there)")
    _dispatch(own.cpu_procs, seen.ngpu, seen.multiprocessing_distributed, cmd)
    if own.params_report:
        write_params_report(seen.output_dir, own.params_report)


def _dispatch(cpu_procs: int, ngpu: int, mp_dist: Optional[bool], cmd: List[str]) -> None:
    """One process, ``cpu_procs`` CPU processes or ``ngpu`` GPU processes (DDP), as asked."""
    if cpu_procs < 1:
        raise UserError(f"--cpu_procs must be >= 1, got {cpu_procs}")
    if cpu_procs > 1:
        if ngpu > 0:
            raise UserError(f"--cpu_procs {cpu_procs} trains on CPU processes: it needs --ngpu 0 (got --ngpu {ngpu})",
                            fix="use --ngpu N alone for N GPUs (one process per GPU)")
        if mp_dist:
            raise UserError("--cpu_procs starts its own processes: drop --multiprocessing_distributed true")
        run_cpu_procs(cmd, cpu_procs)
        return
    if ngpu > 1:
        if mp_dist is False:
            raise UserError(
                f"--ngpu {ngpu} with --multiprocessing_distributed false would use DataParallel, "
                "which espnet-lw does not support",
                fix="drop --multiprocessing_distributed false: --ngpu N runs DDP, one process per GPU",
            )
        if mp_dist is None:
            cmd = cmd + ["--multiprocessing_distributed", "true"]
    _train(cmd)


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
