"""One measurement of the device benchmark, in a process of its own (``python -m espnet_lw.bin.device_probe``).

:mod:`espnet_lw.benchmark.device` starts a fresh process per model x backend x thread count, so
that the peak resident memory it reports is that configuration's alone. The process loads the
model, then transcribes a test set (a ``wav.scp``) and one ~5 s file, and writes a JSON report:

* ``load_s``: model loading (imports excluded, reported as ``import_s``);
* ``whole_s`` / ``rtf``: the whole path over the test set, model already loaded: audio file read
  -> features -> network -> CTC greedy -> text, after one warm-up utterance (not counted);
  ``network_s`` (and for ONNX ``features_s``, ``decode_s``) are the parts of it;
* ``latency``: the same path on one file, ``runs`` times (median, min, max in ms);
* ``peak_mb``: the process's peak resident memory, ``VmHWM`` of /proc/self/status (``ru_maxrss``
  is not used: Linux carries the parent's peak into a child across fork + exec);
* ``torch_imported`` / ``espnet_imported``: whether the process ever imported them.

Backends:

* ``onnx``: the torch-free runtime (:mod:`espnet_lw.runtime`), exactly the ``transcribe`` path
  (:func:`espnet_lw.runtime.transcribe.transcribe_file`); imports neither torch nor ESPnet;
* ``torch``: ESPnet's ``Speech2Text`` as stage 12 decodes with it (:mod:`espnet_lw.inference`:
  ``model.encode`` with ESPnet's frontend + CTC log-softmax + greedy, one utterance at a time);
  its ``network_s`` is ``encode`` (frontend included) + the CTC head.

``cold`` mode loads the model, transcribes the latency file once, prints ``uttid text`` on stdout
and exits: the caller times process start -> that line (the cold start).

Thread counts are set by the caller in the environment (``OMP_NUM_THREADS`` ...) and here:
onnxruntime's ``intra_op_num_threads``, ``torch.set_num_threads``.

Only the standard library is imported at module level: the backend's own imports happen in its
function, so that the ONNX probe never loads torch.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

BACKENDS = ("onnx", "torch")


@dataclass
class ProbeArgs:
    """What one probe measures (the command line of ``python -m espnet_lw.bin.device_probe``)."""

    backend: str
    model: str  #: onnx: exported model dir; torch: the training config.yaml
    threads: int = 1
    precision: Optional[str] = None  #: onnx: fp32 | int8
    model_file: Optional[str] = None  #: torch: the .pth
    scp: Optional[str] = None  #: the test set (``uttid path`` lines); none: latency only
    latency_wav: Optional[str] = None
    latency_runs: int = 20
    hyp_out: Optional[str] = None  #: write ``uttid text`` of the test set here
    out: Optional[str] = None  #: the JSON report (default: stdout)
    cold: bool = False


def _status_mb(field: str) -> Optional[float]:
    """A memory line of /proc/self/status (``VmHWM``, ``VmRSS``) in MiB; ``None`` where /proc is missing."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mb() -> Optional[float]:
    """The process's peak resident set size (VmHWM) in MiB."""
    return _status_mb("VmHWM")


def current_rss_mb() -> Optional[float]:
    """The process's resident set size now (VmRSS) in MiB."""
    return _status_mb("VmRSS")


def imported_frameworks() -> Dict[str, bool]:
    mods = set(sys.modules)
    return {"torch_imported": any(m == "torch" or m.startswith("torch.") for m in mods),
            "espnet_imported": any(m.split(".")[0] in ("espnet", "espnet2") for m in mods)}


class Timer:
    """Wraps a callable and sums the seconds spent in it."""

    def __init__(self, fn: Callable):
        self.fn, self.seconds, self.calls = fn, 0.0, 0

    def __call__(self, *a, **kw):
        t0 = time.perf_counter()
        try:
            return self.fn(*a, **kw)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1


def read_scp(path: str) -> List[Tuple[str, str]]:
    items = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        parts = line.split(maxsplit=1)
        if len(parts) == 2:
            items.append((parts[0], parts[1].strip()))
    return items


def latency_stats(seconds: List[float]) -> dict:
    ms = [1000.0 * s for s in seconds]
    return {"runs": len(ms), "median_ms": round(statistics.median(ms), 3) if ms else None,
            "min_ms": round(min(ms), 3) if ms else None, "max_ms": round(max(ms), 3) if ms else None}


# --------------------------------------------------------------------------
# the two backends: each returns (load, transcribe(path) -> (text, audio seconds), network timers)
# --------------------------------------------------------------------------
def _onnx_backend(args: ProbeArgs):
    from espnet_lw.runtime.model import load_model
    from espnet_lw.runtime.transcribe import transcribe_file

    def load():
        return load_model(args.model, precision=args.precision, threads=args.threads)

    def setup(model):
        timers = {"network": Timer(model.log_probs), "features": Timer(model.features), "decode": Timer(model.decode)}
        # transcribe_samples calls these through the instance: the wrappers see every call
        model.log_probs, model.features, model.decode = timers["network"], timers["features"], timers["decode"]

        def transcribe(path: str, uttid: str):
            r = transcribe_file(model, path, uttid)
            return r.text, r.duration

        return transcribe, timers

    return load, setup


def _torch_backend(args: ProbeArgs):
    import argparse

    import soundfile as sf
    import torch

    from espnet_lw.inference import build_speech2text, decode_batch, ids_to_text
    from espnet_lw.tasks.asr import register_models  # imports ESPnet quietly: before espnet2.bin

    register_models()
    from espnet2.bin import asr_inference  # noqa: F401 - imported here: its import time is not load time

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (cannot happen in a fresh process)
        pass
    opts = {"decoding": "greedy", "batch_size": 1, "beam_size": 1}

    def load():
        ns = argparse.Namespace(asr_train_config=args.model, asr_model_file=args.model_file)
        return build_speech2text(ns, opts, "cpu")

    def setup(s2t):
        model = s2t.asr_model
        timers = {"network": Timer(model.encode), "ctc": Timer(model.ctc.log_softmax)}
        model.encode, model.ctc.log_softmax = timers["network"], timers["ctc"]

        def transcribe(path: str, uttid: str):
            wav, rate = sf.read(path, dtype="float32", always_2d=True)
            wav = wav[:, 0] if wav.shape[1] == 1 else wav.mean(axis=1, dtype="float32")
            ids = decode_batch(s2t, [torch.from_numpy(wav)], opts)[0]
            return ids_to_text(s2t, ids)[0], len(wav) / rate

        return transcribe, timers

    return load, setup


def run_probe(args: ProbeArgs) -> dict:
    """Measure (see the module docstring); returns the report (also written to ``args.out``)."""
    if args.backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {args.backend!r}")
    t_start = time.perf_counter()
    load, setup = _onnx_backend(args) if args.backend == "onnx" else _torch_backend(args)
    import_s = time.perf_counter() - t_start
    t0 = time.perf_counter()
    model = load()
    load_s = time.perf_counter() - t0
    transcribe, timers = setup(model)
    report: dict = {"backend": args.backend, "precision": args.precision, "threads": args.threads,
                    "model": args.model, "pid": os.getpid(), "import_s": round(import_s, 4),
                    "load_s": round(load_s, 4), "rss_after_load_mb": current_rss_mb()}
    if args.cold:
        text, _ = transcribe(args.latency_wav, "cold")
        sys.stdout.write(f"{Path(args.latency_wav).stem} {text}\n")
        sys.stdout.flush()
    else:
        if args.scp:
            report.update(_test_set(args, transcribe, timers))
        if args.latency_wav:
            transcribe(args.latency_wav, "warmup")
            secs, duration = [], 0.0
            for _ in range(max(1, args.latency_runs)):
                t0 = time.perf_counter()
                _, duration = transcribe(args.latency_wav, "latency")
                secs.append(time.perf_counter() - t0)
            report["latency"] = {"file": args.latency_wav, "duration_s": round(duration, 4), **latency_stats(secs)}
    report["peak_mb"] = peak_rss_mb()
    report.update(imported_frameworks())
    report["total_s"] = round(time.perf_counter() - t_start, 3)
    text = json.dumps(report, indent=1) + "\n"
    if args.out:
        tmp = Path(args.out).with_name(Path(args.out).name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, args.out)
    elif not args.cold:
        sys.stdout.write(text)
    return report


def _test_set(args: ProbeArgs, transcribe, timers: Dict[str, Timer]) -> dict:
    items = read_scp(args.scp)
    if not items:
        raise ValueError(f"{args.scp}: no utterances")
    transcribe(items[0][1], items[0][0])  # warm-up: first-run allocations are not counted
    for t in timers.values():
        t.seconds, t.calls = 0.0, 0
    hyps, audio, per_utt = [], 0.0, []
    t_all = time.perf_counter()
    for uttid, path in items:
        t0 = time.perf_counter()
        text, duration = transcribe(path, uttid)
        per_utt.append(time.perf_counter() - t0)
        audio += duration
        hyps.append(f"{uttid} {text}".rstrip(" "))
    whole = time.perf_counter() - t_all
    if args.hyp_out:
        Path(args.hyp_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.hyp_out).write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    out = {"utterances": len(items), "audio_s": round(audio, 4), "whole_s": round(whole, 6),
           "rtf": round(whole / audio, 7) if audio > 0 else None,
           "utterance_s_max": round(max(per_utt), 6)}
    network = timers["network"].seconds + (timers["ctc"].seconds if "ctc" in timers else 0.0)
    out["network_s"] = round(network, 6)
    for name in ("features", "decode"):
        if name in timers:
            out[f"{name}_s"] = round(timers[name].seconds, 6)
    return out
