"""The device benchmark (issue 11, item 5): every model as a device would run it, beside ESPnet's torch path.

For each model -- the trained reference and students of the exp tree (``config.yaml`` +
``valid.loss.ave.pth``), and the paper-scale models (``conf/reference_paper.yaml`` and its students
with 6 / 4 / 2 blocks, random weights: speed and size only) -- :func:`run_device_benchmark`:

1. exports it to ONNX fp32 + int8 (:mod:`espnet_lw.export.onnx_export`; skipped when the export is
   there and the checkpoint's and config's sha256 are those it was made from);
2. counts the network's FLOPs on the test set (``torch.utils.flop_counter`` on the exported graph's
   torch module, fitted per utterance length);
3. for each backend (ONNX fp32, ONNX int8, ESPnet torch ``Speech2Text``) and thread count, starts a
   fresh probe process (:mod:`espnet_lw.benchmark.device_probe`): load seconds, whole-path real-time
   factor over the test set, latency of one 5 s file, peak resident memory, hypotheses;
4. scores the hypotheses with sclite (WER), measures the cold start (process start -> first
   transcript of the 5 s file: the ``transcribe`` command for ONNX, a cold probe for torch) and
   numpy's one-core sgemm rate (the GFLOP/s yardstick);
5. writes ``device.json``, the RESULTS.md section, ``benchmark.json``'s ``device`` key and the plot
   (:mod:`espnet_lw.benchmark.device_report`).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from espnet_lw.benchmark import device_report
from espnet_lw.benchmark.systems import discover_systems, system_kind
from espnet_lw.utils.cli import UserError
from espnet_lw.utils.io import atomic_write_text, load_yaml, sha256_of, write_yaml

logger = logging.getLogger(__name__)

#: backend keys of the result rows: (probe backend, ONNX precision)
BACKENDS = {"torch": ("torch", None), "fp32": ("onnx", "fp32"), "int8": ("onnx", "int8")}
#: encoder blocks of the paper-scale students (50 / 66.7 / 83.3 % of the reference's 12 removed)
PAPER_STUDENT_BLOCKS = (6, 4, 2)
PAPER_VOCAB = 256  # the paper's BPE vocabulary size
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS")
#: prints VmHWM of the process at exit, then runs the module named first: `transcribe`'s own peak memory
#: (a child's ru_maxrss would carry the parent's peak across fork + exec)
PEAK_WRAPPER = (
    "import atexit, runpy, sys\n"
    "def _peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            sys.stderr.write('DEVICE_BENCHMARK_VMHWM_KB ' + line.split()[1] + '\\n')\n"
    "atexit.register(_peak)\n"
    "mod = sys.argv[1]\n"
    "sys.argv = [mod] + sys.argv[2:]\n"
    "runpy.run_module(mod, run_name='__main__', alter_sys=True)\n"
)


@dataclass
class ModelSpec:
    """A model of the benchmark: where its training config and parameters are, and what it is."""

    name: str
    kind: str  #: reference | scratch | pruned | encrl | student | paper_reference | paper_student
    config: Path
    model_file: Path
    trained: bool = True
    ratio: Optional[float] = None

    @property
    def is_student(self) -> bool:
        return self.kind not in ("reference", "paper_reference")


@dataclass
class Options:
    """What :func:`run_device_benchmark` does (the command line of ``espnet_lw.bin.device_benchmark``)."""

    recipe_dir: Path
    expdir: Path = Path("exp")
    exp_dirs: Sequence[Path] = ()
    model_file: str = "valid.loss.ave.pth"
    dumpdir: Path = Path("dump")
    test_set: str = "test"
    parity_set: Optional[str] = "dev"
    threads: Sequence[int] = (1, 2)
    latency_runs: int = 20
    latency_seconds: float = 5.0
    cold_runs: int = 3
    paper_models: bool = True
    paper_config: Path = Path("conf/reference_paper.yaml")
    limit: int = 0
    paper_limit: int = 0  #: the paper-scale models' speed on the first N test utterances (0: as --limit)
    out_dir: Path = Path("exp/device")
    backends: Sequence[str] = tuple(BACKENDS)
    write_results: bool = True
    results: str = "RESULTS.md"
    command: Optional[str] = None
    probe_timeout: float = 3600.0

    def path(self, p: Path) -> Path:
        """``p`` relative to the recipe directory (absolute paths as they are)."""
        return p if Path(p).is_absolute() else self.recipe_dir / p


@dataclass
class EvalSet:
    scp: Path  #: ``uttid path`` lines, paths absolute (the probes run in the recipe dir anyway)
    text: Optional[Path]
    utt2spk: Optional[Path]
    utterances: int
    audio_seconds: float
    samples: List[int] = field(default_factory=list)
    sample_rate: int = 16000


# --------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------
def find_models(opts: Options) -> List[ModelSpec]:
    """The trained models: ``--exp_dirs``, else every reference and student under ``--expdir``."""
    specs: List[ModelSpec] = []
    if opts.exp_dirs:
        for exp in (opts.path(Path(d)) for d in opts.exp_dirs):
            cfg = exp / "config.yaml"
            if not cfg.is_file():
                raise UserError("no config.yaml in this exp dir", str(exp), "give a trained model's exp dir")
            kind = system_kind(exp, load_yaml(cfg, "training config", allow_empty=True)) or "student"
            specs.append(ModelSpec(_name(exp), kind, cfg, exp / opts.model_file))
        ref = [s for s in specs if s.kind == "reference"]
        ref_blocks = _num_blocks(ref[0].config) if ref else None
        for s in specs:
            nb = _num_blocks(s.config)
            s.ratio = 0.0 if s.kind == "reference" else (round(1 - nb / ref_blocks, 3) if ref_blocks and nb else None)
    else:
        expdir = opts.path(opts.expdir)
        if expdir.is_dir():
            for s in discover_systems(expdir):
                specs.append(ModelSpec(s.name, s.kind, s.exp / "config.yaml", s.exp / opts.model_file, ratio=s.ratio))
    kept = []
    for s in specs:
        if s.model_file.is_file():
            kept.append(s)
        else:
            logger.warning("%s: no %s (not trained yet?): left out", s.config.parent, s.model_file.name)
    return kept


def _name(exp: Path) -> str:
    return exp.name[len("asr_"):] if exp.name.startswith("asr_") else exp.name


def _num_blocks(config: Path) -> Optional[int]:
    nb = (load_yaml(config, "training config", allow_empty=True).get("encoder_conf") or {}).get("num_blocks")
    return int(nb) if nb is not None else None


def paper_models(opts: Options, work: Path) -> List[ModelSpec]:
    """The paper-scale reference (12 blocks) and its students (6 / 4 / 2 blocks), random weights.

    Written once under ``work/<name>/`` (config.yaml as training writes it, model.pth seeded) and
    reused while the paper config is unchanged, so that their exports are reused too.
    """
    src = opts.path(opts.paper_config)
    blocks = int(load_yaml(src, "paper reference config")["encoder_conf"]["num_blocks"])
    specs = []
    for nb in (blocks, *PAPER_STUDENT_BLOCKS):
        name = "paper_reference" if nb == blocks else f"paper_r{round(100 * (1 - nb / blocks))}"
        d = work / name
        conf = _full_config(src, nb, d)
        cfg, pth = d / "config.yaml", d / "model.pth"
        if not (cfg.is_file() and pth.is_file() and load_yaml(cfg, "config") == conf):
            _write_random_model(conf, cfg, pth)
        specs.append(ModelSpec(name, "paper_reference" if nb == blocks else "paper_student", cfg, pth,
                               trained=False, ratio=round(1 - nb / blocks, 3)))
    return specs


def _full_config(src: Path, num_blocks: int, d: Path) -> dict:
    """The training config ``src`` with ``num_blocks`` blocks, as training would write it (every option,
    parsed by the task's own parser as ``lw.sh`` passes them); token ids are all an untrained model needs:
    a :data:`PAPER_VOCAB` character-type list (no BPE model to load) stands in for the BPE vocabulary."""
    from espnet_lw.tasks.asr import LWASRTask

    stats = (d / "feats_stats.npz").resolve()
    argv = ["--config", str(src), "--token_list", "unused", "--output_dir", str(d), "--token_type", "char",
            "--frontend_conf", "fs=16k", "--encoder_conf", f"num_blocks={num_blocks}",
            "--normalize", "global_mvn", "--normalize_conf", f"stats_file={stats}"]
    conf = vars(LWASRTask.get_parser().parse_args(argv))
    conf.pop("config", None)
    conf["token_list"] = ["<blank>", "<unk>", "<space>"] + [f"t{i}" for i in range(PAPER_VOCAB - 4)] + ["<sos/eos>"]
    return json.loads(json.dumps(conf))  # plain types only (as YAML reads it back)


def _write_random_model(conf: dict, cfg: Path, pth: Path) -> None:
    import argparse

    import torch

    from espnet_lw.tasks.asr import LWASRTask

    cfg.parent.mkdir(parents=True, exist_ok=True)
    n_mels = int(conf["frontend_conf"].get("n_mels", 80))
    np.savez(conf["normalize_conf"]["stats_file"], count=np.array(1.0), sum=np.zeros(n_mels),
             sum_square=np.ones(n_mels))
    torch.manual_seed(0)
    model = LWASRTask.build_model(argparse.Namespace(**conf))
    torch.save(model.state_dict(), pth)
    write_yaml(cfg, conf)


# --------------------------------------------------------------------------
# export (cached) and FLOPs
# --------------------------------------------------------------------------
def export_dir_is_current(out: Path, spec: ModelSpec) -> bool:
    """Whether ``out`` holds an export of exactly this config and checkpoint (both files)."""
    meta_file = out / "meta.json"
    if not (meta_file.is_file() and (out / "model.onnx").is_file() and (out / "model.int8.onnx").is_file()):
        return False
    try:
        src = json.loads(meta_file.read_text(encoding="utf-8")).get("source") or {}
    except (OSError, json.JSONDecodeError):
        return False
    return src.get("sha256") == sha256_of(spec.model_file) and src.get("config_sha256") == sha256_of(spec.config)


def ensure_export(spec: ModelSpec, out: Path, parity_scp: Optional[Path]) -> dict:
    """Export ``spec`` to ``out`` unless it is already there (see :func:`export_dir_is_current`); its meta.json."""
    if export_dir_is_current(out, spec):
        logger.info("%s: export in %s is current (same checkpoint sha256): reused", spec.name, out)
    else:
        from espnet_lw.export.onnx_export import export_model

        logger.info("%s: exporting to %s", spec.name, out)
        export_model(spec.config, spec.model_file, out, parity_scp=parity_scp if spec.trained else None,
                     parity_n=20, default_precision="auto" if spec.trained and parity_scp else "int8")
    return json.loads((out / "meta.json").read_text(encoding="utf-8"))


def count_flops(spec: ModelSpec, frames: Sequence[int]) -> dict:
    """FLOPs of the network (MVN + encoder + CTC head, the exported graph) on utterances of ``frames``
    feature frames each, summed.

    ``torch.utils.flop_counter`` counts the matrix products and convolutions of the export's torch
    module at three lengths; the count is fitted as ``a + b T' + c T'^2`` in the subsampled length
    ``T'`` (linear layers and convolutions, plus attention) and checked at a fourth length.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from espnet_lw.export.onnx_export import load_asr_model
    from espnet_lw.export.wrapper import CTCExportModule

    model, conf = load_asr_model(spec.config, spec.model_file)
    module = CTCExportModule(model)
    n_mels = int((conf.get("frontend_conf") or {}).get("n_mels", 80))

    def flops_at(t: int) -> int:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(torch.zeros(1, t, n_mels), torch.tensor([t]))
        return int(counter.get_total_flops())

    def t_out(t: int) -> int:
        return int(CTCExportModule.output_lengths(torch.tensor([t]))[0])

    lo, hi = max(min(frames), 64), max(max(frames), 128)
    fit_t = [lo, (lo + hi) // 2, hi]
    xs = np.array([[1.0, t_out(t), t_out(t) ** 2] for t in fit_t])
    coef = np.linalg.solve(xs, np.array([flops_at(t) for t in fit_t], dtype=np.float64))
    check_t = (lo + 3 * hi) // 4
    predicted = coef @ np.array([1.0, t_out(check_t), t_out(check_t) ** 2])
    actual = flops_at(check_t)
    total = sum(float(coef @ np.array([1.0, t_out(t), t_out(t) ** 2])) for t in frames)
    return {"test_set_gflop": round(total / 1e9, 3),
            "fit_lengths": fit_t, "check_length": check_t,
            "fit_rel_error": round(float(abs(predicted - actual) / max(actual, 1)), 6),
            "method": "torch.utils.flop_counter.FlopCounterMode on the exported graph's torch module "
                      "(2 FLOPs per multiply-add), fitted a + b T' + c T'^2"}


# --------------------------------------------------------------------------
# test set, latency file, sgemm
# --------------------------------------------------------------------------
def prepare_test_set(opts: Options, work: Path, limit: Optional[int] = None) -> EvalSet:
    """The test set's (first ``limit``, default ``--limit``) utterances: a wav.scp with absolute paths,
    text and utt2spk."""
    import soundfile as sf

    from espnet_lw.inference import read_scp

    data = opts.path(opts.dumpdir) / "raw" / opts.test_set
    items = read_scp(data / "wav.scp")
    limit = opts.limit if limit is None else limit
    if limit > 0:
        items = items[:limit]
    keep = {u for u, _ in items}
    work.mkdir(parents=True, exist_ok=True)
    lines, samples, rate = [], [], None
    for uttid, path in items:
        if path.endswith("|"):
            raise UserError(f"utterance {uttid} is a command, not a file", str(data / "wav.scp"),
                            "run stage 3 (format_wav_scp) first")
        p = Path(path) if Path(path).is_absolute() else opts.recipe_dir / path
        info = sf.info(str(p))
        rate = rate or int(info.samplerate)
        samples.append(int(info.frames * 16000 / info.samplerate) if info.samplerate != 16000 else int(info.frames))
        lines.append(f"{uttid} {p.resolve()}")
    atomic_write_text(work / "wav.scp", "".join(x + "\n" for x in lines))
    subsets = {}
    for name in ("text", "utt2spk"):
        src = data / name
        if src.is_file():
            rows = [ln for ln in src.read_text(encoding="utf-8").splitlines() if ln.split(maxsplit=1)[:1]
                    and ln.split(maxsplit=1)[0] in keep]
            atomic_write_text(work / name, "".join(r + "\n" for r in rows))
            subsets[name] = work / name
    return EvalSet(work / "wav.scp", subsets.get("text"), subsets.get("utt2spk"), len(items),
                   sum(samples) / 16000.0, samples, rate or 16000)


def make_latency_wav(opts: Options, out: Path) -> dict:
    """A ``--latency_seconds`` file cut from the test set (the shortest utterance at least that long,
    else utterances joined); 16-bit PCM wav."""
    import soundfile as sf

    from espnet_lw.inference import read_scp

    data = opts.path(opts.dumpdir) / "raw" / opts.test_set
    items = [(u, Path(p) if Path(p).is_absolute() else opts.recipe_dir / p) for u, p in read_scp(data / "wav.scp")]
    infos = [(u, p, sf.info(str(p))) for u, p in items]
    rate = int(infos[0][2].samplerate)
    need = int(round(opts.latency_seconds * rate))
    long_enough = sorted((i.frames, u, p) for u, p, i in infos if i.frames >= need and i.samplerate == rate)
    if long_enough:
        _, uttid, path = long_enough[0]
        wav, _ = sf.read(str(path), dtype="float32", always_2d=True)
        wave, source = wav[:need, 0], [uttid]
    else:
        parts, source, n = [], [], 0
        for u, p, i in infos:
            if i.samplerate != rate:
                continue
            wav, _ = sf.read(str(p), dtype="float32", always_2d=True)
            parts.append(wav[:, 0])
            source.append(u)
            n += len(wav)
            if n >= need:
                break
        wave = np.concatenate(parts)[:need]
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(out), wave, rate, subtype="PCM_16")
    return {"file": str(out), "seconds": round(len(wave) / rate, 3), "from": source}


SGEMM_CODE = (
    "import json, time, numpy as np\n"
    "n = 1024\n"
    "a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)\n"
    "b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)\n"
    "for _ in range(3): a @ b\n"
    "ts = []\n"
    "for _ in range(20):\n"
    "    t0 = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t0)\n"
    "ts.sort()\n"
    "f = 2.0 * n ** 3\n"
    "print(json.dumps({'best_gflops': f / ts[0] / 1e9, 'median_gflops': f / ts[len(ts) // 2] / 1e9}))\n"
)


def sgemm_rate() -> dict:
    """numpy's float32 1024x1024 matrix product on one core (OPENBLAS/OMP/MKL_NUM_THREADS=1), GFLOP/s."""
    out = subprocess.run([sys.executable, "-c", SGEMM_CODE], env=thread_env(1), capture_output=True, text=True,
                         check=True, timeout=300)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return {k: round(v, 2) for k, v in res.items()}


# --------------------------------------------------------------------------
# probes and cold starts
# --------------------------------------------------------------------------
def thread_env(threads: int) -> Dict[str, str]:
    env = dict(os.environ)
    for k in THREAD_VARS:
        env[k] = str(threads)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def probe_command(backend: str, spec: ModelSpec, onnx_dir: Path, threads: int, precision: Optional[str] = None,
                  **extra) -> List[str]:
    cmd = [sys.executable, "-m", "espnet_lw.bin.device_probe", "--backend", backend, "--threads", str(threads)]
    if backend == "onnx":
        cmd += ["--model", str(onnx_dir), "--precision", precision]
    else:
        cmd += ["--model", str(spec.config.resolve()), "--model_file", str(spec.model_file.resolve())]
    for k, v in extra.items():
        if v is True:
            cmd.append(f"--{k}")
        elif v is not None and v is not False:
            cmd += [f"--{k}", str(v)]
    return cmd


def run_probe(cmd: List[str], out_json: Path, threads: int, cwd: Path, timeout: float = 3600.0) -> dict:
    """Run one probe process (fresh, ``threads`` threads everywhere); its JSON report."""
    out_json.parent.mkdir(parents=True, exist_ok=True)
    if out_json.exists():
        out_json.unlink()
    log = out_json.with_suffix(".log")
    with open(log, "w", encoding="utf-8") as err:
        proc = subprocess.run(cmd + ["--out", str(out_json)], cwd=cwd, env=thread_env(threads),
                              stdout=err, stderr=subprocess.STDOUT, timeout=timeout)
    if proc.returncode != 0 or not out_json.is_file():
        tail = "".join(log.read_text(encoding="utf-8", errors="replace").splitlines(True)[-15:])
        raise RuntimeError(f"probe failed (exit {proc.returncode}): {shlex.join(cmd)}\n{tail}")
    return json.loads(out_json.read_text(encoding="utf-8"))


def cold_start(cmd: List[str], cwd: Path, runs: int, log: Path) -> dict:
    """Median seconds from process start to its first stdout line (a transcript), over ``runs``; and
    the peak memory the process reports (``DEVICE_BENCHMARK_VMHWM_KB`` on stderr, or its JSON)."""
    secs, peaks = [], []
    log.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(max(1, runs)):
        with open(log, "w", encoding="utf-8") as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=cwd, env=thread_env(1), stdout=subprocess.PIPE, stderr=err, text=True)
            first = proc.stdout.readline()
            elapsed = time.perf_counter() - t0
            proc.stdout.read()
            rc = proc.wait()
        if rc != 0 or not first.strip():
            tail = "".join(log.read_text(encoding="utf-8", errors="replace").splitlines(True)[-10:])
            raise RuntimeError(f"cold start failed (exit {rc}): {shlex.join(cmd)}\n{tail}")
        secs.append(elapsed)
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("DEVICE_BENCHMARK_VMHWM_KB "):
                peaks.append(int(line.split()[1]) / 1024.0)
    secs.sort()
    return {"runs": len(secs), "median_s": round(secs[len(secs) // 2], 4), "min_s": round(secs[0], 4),
            "peak_mb": round(max(peaks), 2) if peaks else None}


def score_wer(test: EvalSet, hyp: Path, out: Path) -> Optional[float]:
    """sclite WER (%) of ``hyp`` against the test set's text; ``None`` without a reference text."""
    if test.text is None:
        return None
    from espnet_lw.scoring import score

    res = score(test.text, hyp, out, utt2spk_path=test.utt2spk, score_types=("wer",))
    return float(res["wer"].err)


# --------------------------------------------------------------------------
# the whole benchmark
# --------------------------------------------------------------------------
def check_options(opts: Options) -> None:
    if not opts.recipe_dir.is_dir():
        raise UserError("no such recipe directory", str(opts.recipe_dir))
    if not opts.threads or any(t < 1 for t in opts.threads):
        raise UserError(f"--threads must be positive integers, got {list(opts.threads)}")
    unknown = set(opts.backends) - set(BACKENDS)
    if unknown or not opts.backends:
        raise UserError(f"unknown backends {sorted(unknown)}; known: {list(BACKENDS)}")
    if opts.latency_runs < 1 or opts.cold_runs < 0 or opts.latency_seconds <= 0:
        raise UserError("--latency_runs must be >= 1, --cold_runs >= 0, --latency_seconds > 0")
    if opts.limit < 0 or opts.paper_limit < 0:
        raise UserError(f"--limit and --paper_limit must be >= 0 (0: all), got {opts.limit} / {opts.paper_limit}")


def measure_model(opts: Options, spec: ModelSpec, onnx_dir: Path, test: EvalSet, latency_wav: Path,
                  work: Path) -> Dict[str, dict]:
    """Probe every backend x thread count of one model (+ WER, cold start); rows keyed by backend."""
    rows: Dict[str, dict] = {}
    for key in opts.backends:
        backend, precision = BACKENDS[key]
        row: dict = {"probes": {}}
        for i, threads in enumerate(opts.threads):
            hyp = work / "hyps" / spec.name / key / "text" if i == 0 and spec.trained else None
            cmd = probe_command(backend, spec, onnx_dir, threads, precision, scp=test.scp, latency_wav=latency_wav,
                                latency_runs=opts.latency_runs, hyp_out=hyp)
            out = work / "probes" / f"{spec.name}.{key}.t{threads}.json"
            logger.info("%s %s, %d thread(s): probing", spec.name, key, threads)
            res = run_probe(cmd, out, threads, opts.recipe_dir, opts.probe_timeout)
            if backend == "onnx" and (res.get("torch_imported") or res.get("espnet_imported")):
                raise RuntimeError(f"the ONNX probe imported torch or ESPnet ({out}): the runtime is not torch-free")
            res["command"] = shlex.join(cmd)
            row["probes"][str(threads)] = res
            logger.info("%s %s @%d: load %.2f s, RTF %.5f, latency %.1f ms, peak %.0f MB", spec.name, key, threads,
                        res["load_s"], res["rtf"], res["latency"]["median_ms"], res["peak_mb"] or 0)
            if hyp is not None:
                row["wer"] = score_wer(test, hyp, work / "score" / spec.name / key)
        if opts.cold_runs:
            if backend == "onnx":
                cmd = [sys.executable, "-c", PEAK_WRAPPER, "espnet_lw.bin.transcribe", str(onnx_dir), str(latency_wav),
                       "--precision", precision, "--threads", "1", "--log_level", "WARNING"]
                shown = shlex.join(["python", "-m", "espnet_lw.bin.transcribe", str(onnx_dir), str(latency_wav),
                                    "--precision", precision, "--threads", "1"])
            else:
                cold_json = work / "probes" / f"{spec.name}.torch.cold.json"
                cmd = probe_command(backend, spec, onnx_dir, 1, None, latency_wav=latency_wav, cold=True,
                                    out=cold_json)
                shown = shlex.join(cmd)
            row["cold_start"] = cold_start(cmd, opts.recipe_dir, opts.cold_runs,
                                           work / "probes" / f"{spec.name}.{key}.cold.log")
            if backend == "torch":
                row["cold_start"]["peak_mb"] = json.loads(cold_json.read_text(encoding="utf-8")).get("peak_mb")
            row["cold_start"]["command"] = shown
        rows[key] = row
    return rows


def run_device_benchmark(opts: Options) -> dict:
    """The whole benchmark (module docstring); returns benchmark.json's ``device`` content."""
    check_options(opts)
    opts.recipe_dir = opts.recipe_dir.resolve()
    work = opts.path(opts.out_dir)
    specs = find_models(opts)
    if opts.paper_models:
        specs += paper_models(opts, work / "paper")
    if not specs:
        raise UserError("no model to benchmark: no trained model (config.yaml + %s) under the expdir and "
                        "--paper_models false" % opts.model_file, str(opts.path(opts.expdir)),
                        "train the models first (./run.sh, local/benchmark.sh) or pass --exp_dirs")
    test = prepare_test_set(opts, work / "test_set")
    # untrained paper-scale models are timed only (no WER): --paper_limit may time them on fewer utterances
    paper_test = test
    if opts.paper_limit > 0 and any(not spec.trained for spec in specs):
        paper_test = prepare_test_set(opts, work / "test_set_paper", opts.paper_limit)
    latency = make_latency_wav(opts, work / "test_set" / f"latency_{opts.latency_seconds:g}s.wav")
    parity_scp = opts.path(opts.dumpdir) / "raw" / opts.parity_set / "wav.scp" if opts.parity_set else None
    if parity_scp is not None and not parity_scp.is_file():
        logger.warning("%s missing: exports check parity on synthetic signals", parity_scp)
        parity_scp = None
    prepared = []
    for spec in specs:
        onnx_dir = work / "onnx" / spec.name
        meta = ensure_export(spec, onnx_dir, parity_scp)
        hop = int((meta.get("frontend") or {}).get("hop_length", 160))
        ev = test if spec.trained else paper_test
        frames = [1 + n // hop for n in ev.samples]  # ESPnet's STFT with center=True
        prepared.append((spec, onnx_dir, meta, count_flops(spec, frames), ev))
    sgemm_before = sgemm_rate()
    models = []
    for spec, onnx_dir, meta, flops, ev in prepared:
        rows = measure_model(opts, spec, onnx_dir, ev, Path(latency["file"]), work)
        models.append(device_report.model_entry(spec, meta, onnx_dir, flops, rows, ev.audio_seconds))
    sgemm_after = sgemm_rate()
    sgemm = {"before": sgemm_before, "after": sgemm_after,
             "gflops": max(sgemm_before["best_gflops"], sgemm_after["best_gflops"]),
             "how": "numpy float32 1024x1024 matmul, OPENBLAS/OMP/MKL_NUM_THREADS=1, best of 20, "
                    "measured before and after the probes (the higher is used)"}
    device = device_report.build_device(models, opts, test, latency, sgemm,
                                        paper_test=None if paper_test is test else paper_test)
    device_report.write_outputs(device, opts, work)
    return device
