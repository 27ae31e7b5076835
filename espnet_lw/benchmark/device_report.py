"""The device benchmark's report: rows, the issue's bounds, markdown, benchmark.json's ``device`` key, the plot.

Everything here works on plain dicts (the probes' JSON reports and what
:mod:`espnet_lw.benchmark.device` measured), so that it is tested on fake measurements.

Rows are keyed by backend: ``torch`` (ESPnet ``Speech2Text``), ``fp32`` and ``int8`` (ONNX). Per
thread count (keys ``"1"``, ``"2"``): ``rtf``, ``latency_ms``, ``peak_mb``, ``network_s``,
``gflops``, ``speedup_vs_torch``. Sizes in MB are 10^6 bytes.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from espnet_lw.utils.env import human_duration
from espnet_lw.utils.io import atomic_write_text

BEGIN_MARK = "<!-- device:begin -->"
END_MARK = "<!-- device:end -->"
ONNX_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
BACKEND_LABELS = {"torch": "torch (ESPnet)", "fp32": "ONNX fp32", "int8": "ONNX int8"}
PLOT_NAME = "device_wer_vs_rtf.png"

# the bounds (mini_synth models, 2 CPU cores)
#: file size: bytes per parameter + MB
SIZE_BOUNDS = {"int8": (1.3, 0.3), "fp32": (4.3, 0.3)}
#: whole-path RTF at 1 thread of the int8 model
RTF_BOUND = {"student": 0.004, "reference": 0.008}
MIN_SPEEDUP = 1.5
MAX_COLD_START_S = 1.0
MAX_TRANSCRIBE_PEAK_MB = 110.0
#: int8 may cost at most this relative test WER (%) against fp32
MAX_INT8_COST_PCT = 3.0


def size_bound_mb(precision: str, params: int) -> float:
    """The issue's largest file size (MB) for ``params`` parameters at ``precision`` (fp32 | int8)."""
    per_param, extra_mb = SIZE_BOUNDS[precision]
    return per_param * params / 1e6 + extra_mb


def int8_cost_pct(wer_fp32: Optional[float], wer_int8: Optional[float]) -> Optional[float]:
    """Relative test WER change of int8 against fp32, in percent (``None`` if unknown or fp32 is 0 % and int8 not)."""
    if wer_fp32 is None or wer_int8 is None:
        return None
    if wer_fp32 == 0:
        return 0.0 if wer_int8 == 0 else None
    return 100.0 * (wer_int8 - wer_fp32) / wer_fp32


def _r(x: Optional[float], nd: int) -> Optional[float]:
    return None if x is None else round(float(x), nd)


# --------------------------------------------------------------------------
# building the json
# --------------------------------------------------------------------------
def model_entry(spec, meta: dict, onnx_dir: Path, flops: dict, rows: Dict[str, dict], audio_seconds: float) -> dict:
    """One model of ``device["models"]``: what it is, its export and its rows (from the probes)."""
    params = int(meta["model"]["params"])
    entry = {
        "name": spec.name, "kind": spec.kind, "trained": spec.trained, "ratio": spec.ratio, "params": params,
        "num_blocks": meta["model"].get("num_blocks"), "output_size": meta["model"].get("output_size"),
        "config": str(spec.config), "model_file": str(spec.model_file), "export_dir": str(onnx_dir),
        "export_default_precision": meta.get("default_precision"), "flops": flops, "rows": {},
    }
    gflop = flops.get("test_set_gflop")

    def gflops(p: dict) -> Optional[float]:
        return _r(gflop / p["network_s"], 2) if gflop and p.get("network_s") else None

    for key, raw in rows.items():
        path = Path(spec.model_file) if key == "torch" else Path(onnx_dir) / ONNX_FILES[key]
        size = path.stat().st_size
        row = {"file": str(path), "mb": round(size / 1e6, 3), "bytes_per_param": round(size / params, 4)}
        if key in SIZE_BOUNDS:
            row["size_bound_mb"] = round(size_bound_mb(key, params), 3)
        probes = raw.get("probes", {})
        first = next(iter(probes.values()), {})
        row["load_s"] = first.get("load_s")
        for field, get in (("rtf", lambda p: p.get("rtf")),
                           ("latency_ms", lambda p: (p.get("latency") or {}).get("median_ms")),
                           ("peak_mb", lambda p: _r(p.get("peak_mb"), 1)),
                           ("network_s", lambda p: p.get("network_s")),
                           ("gflops", gflops)):
            row[field] = {t: get(p) for t, p in probes.items()}
        if "wer" in raw:
            row["wer"] = raw["wer"]
        if "cold_start" in raw:
            row["cold_start"] = raw["cold_start"]
        row["probes"] = probes
        entry["rows"][key] = row
    torch_row = entry["rows"].get("torch")
    for key in ("fp32", "int8"):
        row = entry["rows"].get(key)
        if row is not None and torch_row is not None:
            row["speedup_vs_torch"] = {t: _r(torch_row["rtf"][t] / row["rtf"][t], 3)
                                       for t in row["rtf"] if row["rtf"][t] and torch_row["rtf"].get(t)}
    fp32, int8 = entry["rows"].get("fp32", {}), entry["rows"].get("int8", {})
    if "wer" in fp32 and "wer" in int8:
        cost = int8_cost_pct(fp32["wer"], int8["wer"])
        int8["int8_cost_pct"] = _r(cost, 2)
        ok = cost is not None and cost <= MAX_INT8_COST_PCT
        entry["recommended_precision"] = "int8" if ok else "fp32"
    return entry


def checks(models: Sequence[dict]) -> List[dict]:
    """The issue's bounds, one entry per model and measure (``ok`` True/False).

    Sizes for every model; speed, cold start, memory and int8 WER for the trained ones (the
    issue's targets are for the mini_synth models).
    """
    out: List[dict] = []

    def add(what, model, backend, value, bound, ok):
        out.append({"check": what, "model": model, "backend": backend, "value": value, "bound": bound,
                    "ok": bool(ok)})

    for m in models:
        rows = m["rows"]
        for key in ("fp32", "int8"):
            if key in rows:
                add("size_mb", m["name"], key, rows[key]["mb"], rows[key]["size_bound_mb"],
                    rows[key]["mb"] <= rows[key]["size_bound_mb"])
        if not m.get("trained"):
            continue
        role = "student" if m["kind"] != "reference" else "reference"
        int8 = rows.get("int8")
        if int8 and int8["rtf"].get("1") is not None:
            add("rtf_at_1_thread", m["name"], "int8", int8["rtf"]["1"], RTF_BOUND[role],
                int8["rtf"]["1"] <= RTF_BOUND[role])
        for key in ("fp32", "int8"):
            row = rows.get(key)
            if row is None:
                continue
            sp = (row.get("speedup_vs_torch") or {}).get("1")
            if sp is not None:
                add("speedup_vs_torch_at_1_thread", m["name"], key, sp, MIN_SPEEDUP, sp >= MIN_SPEEDUP)
            cold = row.get("cold_start")
            if cold:
                add("cold_start_s", m["name"], key, cold["median_s"], MAX_COLD_START_S,
                    cold["median_s"] <= MAX_COLD_START_S)
        if role == "student" and int8 and "int8_cost_pct" in int8:
            cost = int8["int8_cost_pct"]
            add("int8_wer_cost_pct", m["name"], "int8", cost, MAX_INT8_COST_PCT,
                cost is not None and cost <= MAX_INT8_COST_PCT)
    students = [m for m in models if m.get("trained") and m["kind"] != "reference"]
    if students:
        small = min(students, key=lambda m: m["params"])
        key = small.get("recommended_precision") or small.get("export_default_precision") or "int8"
        cold = (small["rows"].get(key) or {}).get("cold_start") or {}
        if cold.get("peak_mb") is not None:
            add("transcribe_peak_mb_smallest_student", small["name"], key, cold["peak_mb"], MAX_TRANSCRIBE_PEAK_MB,
                cold["peak_mb"] <= MAX_TRANSCRIBE_PEAK_MB)
    return out


def build_device(models: List[dict], opts, test, latency: dict, sgemm: dict, env: Optional[dict] = None,
                 paper_test=None) -> dict:
    """benchmark.json's ``device`` content (``paper_test``: the subset the paper-scale models were timed on,
    when ``--paper_limit`` made one)."""
    if env is None:
        env = environment()
    paper = None if paper_test is None else {"utterances": paper_test.utterances,
                                             "audio_seconds": round(paper_test.audio_seconds, 3),
                                             "limit": getattr(opts, "paper_limit", None) or None}
    return {
        "command": opts.command,
        "environment": env,
        "test_set": {"name": opts.test_set, "utterances": test.utterances,
                     "audio_seconds": round(test.audio_seconds, 3), "limit": opts.limit or None},
        "paper_test_set": paper,
        "latency_file": latency,
        "threads": [str(t) for t in opts.threads],
        "latency_runs": opts.latency_runs,
        "cold_runs": opts.cold_runs,
        "sgemm_one_core": sgemm,
        "models": models,
        "checks": checks(models),
        "definitions": DEFINITIONS,
    }


DEFINITIONS = {
    "rtf": "whole path over the test set, model already loaded: audio file read -> features -> network -> CTC "
           "greedy -> text, one utterance at a time, after one warm-up utterance; seconds / audio seconds",
    "latency_ms": "the same path on one file of the latency length, median of latency_runs runs",
    "peak_mb": "peak resident memory (VmHWM, MiB) of the probe process: loading + the test set + the latency runs",
    "load_s": "model loading in a fresh process (imports excluded)",
    "network_s": "ONNX: onnxruntime session runs; torch: ESPnet encode (frontend included) + CTC log-softmax",
    "gflops": "network FLOPs on the test set (flops.test_set_gflop) / network_s",
    "cold_start": "process start -> first transcript line of the latency file, 1 thread: ONNX the transcribe "
                  "command, torch a cold probe loading Speech2Text; peak_mb its VmHWM",
    "mb": "file size in 10^6 bytes (torch: the .pth checkpoint)",
    "int8_cost_pct": "100 x (WER int8 - WER fp32) / WER fp32 on the test set",
    "speedup_vs_torch": "torch rtf / ONNX rtf at the same thread count",
    "torch": "ESPnet Speech2Text as stage 12 runs it (espnet_lw.inference: encode + CTC greedy, batch 1)",
}


def environment() -> dict:
    from espnet_lw.benchmark.report import environment as bench_env
    from espnet_lw.utils.env import package_version

    env = bench_env()
    env.update({"onnxruntime": package_version("onnxruntime"), "onnx": package_version("onnx"),
                "numpy": package_version("numpy")})
    return env


# --------------------------------------------------------------------------
# markdown
# --------------------------------------------------------------------------
def _f(x, fmt: str, none: str = "-") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return none
    return format(x, fmt)


def _params(n: int) -> str:
    return f"{n / 1e6:.2f} M"


def table(models: Sequence[dict], threads: Sequence[str], with_wer: bool, sgemm: Optional[float]) -> List[str]:
    head = ["model", "backend", "params", "MB", "B/param", "load s"] + [f"RTF@{t}" for t in threads]
    head += [f"speed-up@{threads[0]}", "latency ms", "peak MB", "cold start s", f"GFLOP/s@{threads[0]}"]
    if with_wer:
        head += ["WER", "int8 cost"]
    lines = ["|" + "|".join(head) + "|", "|" + "---|" * len(head)]
    t0 = threads[0]
    for m in models:
        for key, row in m["rows"].items():
            size = _f(row["mb"], ".2f")
            if "size_bound_mb" in row and row["mb"] > row["size_bound_mb"]:
                size += f" (> {row['size_bound_mb']:.2f})"
            gf = row["gflops"].get(t0)
            gf_cell = _f(gf, ".1f") + (f" ({100 * gf / sgemm:.0f}%)" if gf and sgemm else "")
            cells = [m["name"], BACKEND_LABELS.get(key, key), _params(m["params"]), size,
                     _f(row["bytes_per_param"], ".2f"), _f(row["load_s"], ".2f")]
            cells += [_f(row["rtf"].get(t), ".4f") for t in threads]
            sp = (row.get("speedup_vs_torch") or {}).get(t0)
            cells += [_f(sp, ".2f") + ("x" if sp is not None else ""), _f(row["latency_ms"].get(t0), ".1f"),
                      _f(row["peak_mb"].get(t0), ".0f"), _f((row.get("cold_start") or {}).get("median_s"), ".2f"),
                      gf_cell]
            if with_wer:
                cost = row.get("int8_cost_pct")
                cells += [_f(row.get("wer"), ".1f"), _f(cost, "+.1f") + ("%" if cost is not None else "")]
            lines.append("|" + "|".join(cells) + "|")
    return lines


CHECK_TEXT = {  # check -> (what, unit, comparison)
    "size_mb": ("file size (int8 <= 1.3 B/param + 0.3 MB, fp32 <= 4.3 B/param + 0.3 MB)", " MB", "<="),
    "rtf_at_1_thread": ("whole-path RTF of int8 at 1 thread (students <= 0.004, reference <= 0.008)", "", "<="),
    "speedup_vs_torch_at_1_thread": (f"speed-up over torch at 1 thread (>= {MIN_SPEEDUP:g}x)", "x", ">="),
    "cold_start_s": (f"cold start (<= {MAX_COLD_START_S:g} s)", " s", "<="),
    "int8_wer_cost_pct": (f"int8 test WER cost, students (<= {MAX_INT8_COST_PCT:g} % relative)", " %", "<="),
    "transcribe_peak_mb_smallest_student": (f"peak memory of `transcribe` with the smallest student "
                                            f"(<= {MAX_TRANSCRIBE_PEAK_MB:g} MB)", " MB", "<="),
}


def check_lines(cks: Sequence[dict]) -> List[str]:
    """One markdown bullet per kind of check: how many met, and each failure with its value."""
    lines = []
    for kind in dict.fromkeys(c["check"] for c in cks):
        group = [c for c in cks if c["check"] == kind]
        what, unit, op = CHECK_TEXT.get(kind, (kind, "", "vs"))
        bad = [c for c in group if not c["ok"]]
        line = f"- {what}: {len(group) - len(bad)} of {len(group)} met"
        if len(group) == 1 and not bad and group[0]["value"] is not None:
            c = group[0]
            line += f" ({c['model']} {BACKEND_LABELS.get(c['backend'], c['backend'])}: {c['value']:.4g}{unit})"
        if bad:
            line += "; **not met**: " + ", ".join(
                f"{c['model']} {BACKEND_LABELS.get(c['backend'], c['backend'])} "
                f"{'unknown' if c['value'] is None else format(c['value'], '.4g') + unit} ({op} {c['bound']:g}{unit})"
                for c in bad)
        lines.append(line)
    return lines


def render_markdown(device: dict, plot_name: Optional[str] = PLOT_NAME) -> str:
    """The RESULTS.md section between the device markers."""
    env = device.get("environment") or {}
    ts = device["test_set"]
    threads = device["threads"]
    sg = (device.get("sgemm_one_core") or {}).get("gflops")
    lat = device.get("latency_file") or {}
    commit = env.get("git_commit") or "unknown"
    lines = [
        BEGIN_MARK, "## Device benchmark: exported ONNX (fp32, int8) against ESPnet's torch `Speech2Text`", "",
        f"Written by `python -m espnet_lw.bin.device_benchmark` (numbers also under `device` in `benchmark.json`) "
        f"on {env.get('date', '?')}, {env.get('cpu', '?')}, commit `{commit}`"
        f"{' (with uncommitted changes)' if env.get('git_dirty') else ''}; onnxruntime {env.get('onnxruntime', '?')}, "
        f"torch {env.get('torch', '?')}. Test set `{ts['name']}`: {ts['utterances']} utterances, "
        f"{human_duration(ts['audio_seconds'])} of audio"
        f"{' (first ' + str(ts['limit']) + ' only)' if ts.get('limit') else ''}.", "",
        "Every figure comes from a fresh process per model, backend and thread count. **RTF**: the whole path over "
        "the test set, model loaded: audio file -> features -> network -> CTC greedy -> text. **Latency**: the "
        f"same path on one {_f(lat.get('seconds'), 'g')} s file, median of {device['latency_runs']} runs at "
        f"{threads[0]} thread. **Peak MB**: peak resident memory (VmHWM) of that process. **Load s**: model "
        "loading, imports excluded. **Cold start**: process start -> first transcript of the same file "
        f"(ONNX: the `transcribe` command; torch: a process loading `Speech2Text`), median of {device['cold_runs']}. "
        "**MB** = 10^6 bytes (torch: the `.pth`). **GFLOP/s**: network FLOPs (MVN + encoder + CTC head) / "
        f"network seconds, in brackets the share of numpy's one-core sgemm ({_f(sg, '.1f')} GFLOP/s, same run). "
        "**int8 cost**: relative test WER change against fp32. torch: ESPnet `Speech2Text` as stage 12 decodes "
        "(encode + CTC greedy, one utterance at a time).", "",
        "```sh", device.get("command") or "(command not recorded)", "```", "",
    ]
    trained = [m for m in device["models"] if m.get("trained")]
    paper = [m for m in device["models"] if not m.get("trained")]
    if trained:
        lines += ["### Trained models", "", *table(trained, threads, True, sg), ""]
    if paper:
        pts = device.get("paper_test_set")
        subset = ("" if not pts else f"; timed on the first {pts['utterances']} test utterances, "
                  f"{human_duration(pts['audio_seconds'])} of audio (`--paper_limit`)")
        lines += [f"### Paper-scale models (random weights: speed and size only{subset})", "",
                  *table(paper, threads, False, sg), ""]
    fp32_default = [m["name"] for m in trained if m.get("recommended_precision") == "fp32"]
    if fp32_default:
        lines += [f"int8 costs more than {MAX_INT8_COST_PCT:g} % relative test WER for {', '.join(fp32_default)}: "
                  "keep fp32 as the default precision of " + ("this model." if len(fp32_default) == 1 else
                                                              "these models."), ""]
    cks = device.get("checks") or []
    if cks:
        n_bad = sum(not c["ok"] for c in cks)
        lines += [f"Issue 11's bounds ({len(cks) - n_bad} of {len(cks)} met; speed, memory and WER bounds for the "
                  "trained models):", ""]
        lines += check_lines(cks)
    if plot_name:
        lines += ["", f"![test WER against real-time factor at 1 thread]({plot_name})"]
    lines.append(END_MARK)
    return "\n".join(lines) + "\n"


def replace_section(text: str, section: str, begin: str = BEGIN_MARK, end: str = END_MARK) -> str:
    """``text`` with its ``begin``...``end`` section replaced by ``section`` (appended if absent)."""
    i, j = text.find(begin), text.find(end)
    if i != -1 and j > i:
        tail = text[j + len(end):]
        return text[:i] + section.rstrip("\n") + ("\n\n" + tail.lstrip("\n") if tail.strip() else "\n")
    return (text.rstrip("\n") + "\n\n" if text.strip() else "") + section


def merge_benchmark_json(path: Path, device: dict) -> None:
    """Set ``device`` in the JSON object of ``path`` (created if missing), other keys as they are."""
    data: dict = {}
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        if text.strip():
            data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: not a JSON object")
    data["device"] = device
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


# --------------------------------------------------------------------------
# plot
# --------------------------------------------------------------------------
def plot_wer_vs_rtf(device: dict, out: Path) -> bool:
    """Test WER against whole-path RTF at the first thread count, one point per model and backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = device["threads"][0]
    markers = {"torch": "s", "fp32": "o", "int8": "^"}
    fig, ax = plt.subplots(figsize=(8, 5))
    models = [m for m in device["models"] if m.get("trained")]
    cmap = plt.get_cmap("tab10")
    n = 0
    for i, m in enumerate(models):
        for key, row in m["rows"].items():
            rtf, wer = row["rtf"].get(t0), row.get("wer")
            if rtf is None or wer is None:
                continue
            ax.scatter([rtf], [wer], marker=markers.get(key, "x"), color=cmap(i % 10), s=45,
                       label=f"{m['name']} {BACKEND_LABELS.get(key, key)}")
            n += 1
    ax.set_xlabel(f"real-time factor, whole path, {t0} thread(s) (lower is faster)")
    ax.set_ylabel(f"WER on {device['test_set']['name']} (%)")
    ax.set_title("Test WER against speed: ONNX fp32 / int8 and ESPnet torch")
    ax.grid(True, alpha=0.3)
    if n:
        ax.set_xscale("log")
        ax.legend(fontsize=6, ncol=2)
    else:
        ax.text(0.5, 0.5, "no trained model with a WER", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return n > 0


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------
def write_outputs(device: dict, opts, work: Path) -> str:
    """device.json, the plot and device.md under ``work``; with ``opts.write_results`` also the RESULTS.md
    section, the plot beside it and ``device`` in benchmark.json (next to RESULTS.md and, when it exists,
    ``<expdir>/benchmark/benchmark.json``). Prints the section; returns it."""
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(work / "device.json", json.dumps(device, indent=1) + "\n")
    plot = work / "wer_vs_rtf.png"
    plot_wer_vs_rtf(device, plot)
    section = render_markdown(device, PLOT_NAME)
    atomic_write_text(work / "device.md", section)
    if opts.write_results:
        results = opts.path(Path(opts.results))
        shutil.copyfile(plot, results.parent / PLOT_NAME)
        old = results.read_text(encoding="utf-8") if results.is_file() else ""
        atomic_write_text(results, replace_section(old, section))
        merge_benchmark_json(results.parent / "benchmark.json", device)
        exp_copy = opts.path(opts.expdir) / "benchmark" / "benchmark.json"
        if exp_copy.is_file():
            merge_benchmark_json(exp_copy, device)
        logging.info("wrote the device section of %s, %s and 'device' in %s", results, results.parent / PLOT_NAME,
                     results.parent / "benchmark.json")
    logging.info("wrote %s, %s, %s", work / "device.json", work / "device.md", plot)
    body = section.replace(BEGIN_MARK + "\n", "").replace(END_MARK + "\n", "")
    print(body, flush=True)
    return section
