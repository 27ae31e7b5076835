"""The device benchmark (issue 11, item 5): its report writer on fake measurements (RESULTS.md's other
sections and benchmark.json's other keys kept), the issue's bounds, the test-set / latency-file
preparation, and real probe processes on the tiny ONNX model of tiny_onnx.py: the JSON fields, and
that the ONNX probe never imports torch or ESPnet. No torch model is built here (CI-sized)."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import tiny_onnx

from espnet_lw.benchmark import device, device_report
from espnet_lw.benchmark.device import EvalSet, ModelSpec, Options
from espnet_lw.bin import device_benchmark as cli
from espnet_lw.utils.cli import UserError

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- fakes
def fake_probe(rtf: float, threads: str, peak: float = 90.0, load: float = 0.2, net: float = 1.0) -> dict:
    return {"backend": "x", "threads": int(threads), "load_s": load, "rtf": rtf, "network_s": net, "peak_mb": peak,
            "latency": {"median_ms": 1000 * rtf * 5, "runs": 20}, "torch_imported": False, "espnet_imported": False}


def fake_model(tmp: Path, name: str, kind: str, params: int, wers=None, rtf_torch=0.006, rtf_fp32=0.003,
               rtf_int8=0.002, int8_bytes=None, fp32_bytes=None, trained=True, cold=0.5, cold_peak=80.0):
    """A model entry as :func:`device.run_device_benchmark` builds it, from fake files and probe reports."""
    exp, onnx = tmp / "exp" / f"asr_{name}", tmp / "onnx" / name
    exp.mkdir(parents=True)
    onnx.mkdir(parents=True)
    (exp / "config.yaml").write_text("encoder: conformer\n")
    (exp / "valid.loss.ave.pth").write_bytes(b"\0" * (4 * params + 1000))
    (onnx / "model.onnx").write_bytes(b"\0" * (fp32_bytes or 4 * params + 100_000))
    (onnx / "model.int8.onnx").write_bytes(b"\0" * (int8_bytes or params + 200_000))
    spec = ModelSpec(name, kind, exp / "config.yaml", exp / "valid.loss.ave.pth", trained=trained,
                     ratio=0.0 if kind == "reference" else 0.5)
    meta = {"default_precision": "int8", "model": {"params": params, "num_blocks": 3, "output_size": 144}}
    wers = wers or {}
    rows = {}
    for key, rtf in (("torch", rtf_torch), ("fp32", rtf_fp32), ("int8", rtf_int8)):
        raw = {"probes": {t: fake_probe(rtf * (1 if t == "1" else 0.6), t) for t in ("1", "2")}}
        if trained and key in wers:
            raw["wer"] = wers[key]
        raw["cold_start"] = {"runs": 3, "median_s": cold * (8 if key == "torch" else 1), "min_s": cold,
                             "peak_mb": cold_peak * (6 if key == "torch" else 1), "command": "python -m ..."}
        rows[key] = raw
    flops = {"test_set_gflop": 20.0, "fit_rel_error": 0.0}
    return device_report.model_entry(spec, meta, onnx, flops, rows, audio_seconds=500.0)


def fake_device(tmp: Path) -> dict:
    models = [
        fake_model(tmp, "reference", "reference", 3_600_000, {"torch": 10.0, "fp32": 10.0, "int8": 10.2},
                   rtf_int8=0.005),
        fake_model(tmp, "student_r83", "encrl", 1_000_000, {"torch": 20.0, "fp32": 20.0, "int8": 22.0}),
        fake_model(tmp, "paper_reference", "paper_reference", 30_000_000, trained=False, rtf_int8=0.03),
    ]
    opts = SimpleNamespace(command="local/device_benchmark.sh --limit 5", test_set="test", limit=0,
                           threads=[1, 2], latency_runs=20, cold_runs=3)
    test = EvalSet(Path("wav.scp"), None, None, 168, 528.1)
    env = {"date": "2026-01-01 00:00:00 UTC", "cpu": "Fake CPU (2 logical cores)", "git_commit": "abc123",
           "git_dirty": False, "onnxruntime": "1.0", "torch": "2.0"}
    sgemm = {"gflops": 100.0}
    return device_report.build_device(models, opts, test, {"file": "latency_5s.wav", "seconds": 5.0}, sgemm, env)


# ---------------------------------------------------------------------------------------------- bounds
def test_size_bounds_and_int8_cost():
    assert device_report.size_bound_mb("int8", 1_000_000) == pytest.approx(1.6)
    assert device_report.size_bound_mb("fp32", 1_000_000) == pytest.approx(4.6)
    assert device_report.int8_cost_pct(20.0, 20.6) == pytest.approx(3.0)
    assert device_report.int8_cost_pct(20.0, 19.0) == pytest.approx(-5.0)
    assert device_report.int8_cost_pct(0.0, 0.0) == 0.0
    assert device_report.int8_cost_pct(0.0, 1.0) is None
    assert device_report.int8_cost_pct(None, 1.0) is None


def test_checks_against_the_issue_bounds(tmp_path):
    dev = fake_device(tmp_path)
    by = {(c["check"], c["model"], c["backend"]): c for c in dev["checks"]}
    # sizes: every model, also the untrained paper one; fake files are within the bounds
    assert by[("size_mb", "paper_reference", "int8")]["ok"]
    assert by[("size_mb", "student_r83", "fp32")]["ok"]
    # RTF bound: 0.008 for the reference, 0.004 for students
    ref_rtf = by[("rtf_at_1_thread", "reference", "int8")]
    assert ref_rtf["bound"] == 0.008 and ref_rtf["ok"]
    assert by[("rtf_at_1_thread", "student_r83", "int8")]["bound"] == 0.004
    # speed-up torch / onnx at 1 thread: 0.006 / 0.003 = 2x
    assert by[("speedup_vs_torch_at_1_thread", "student_r83", "fp32")]["value"] == pytest.approx(2.0)
    # int8 cost: 10 % relative for the student -> fails, fp32 recommended; the reference is not checked
    cost = by[("int8_wer_cost_pct", "student_r83", "int8")]
    assert cost["value"] == pytest.approx(10.0) and not cost["ok"]
    assert ("int8_wer_cost_pct", "reference", "int8") not in by
    models = {m["name"]: m for m in dev["models"]}
    assert models["student_r83"]["recommended_precision"] == "fp32"
    assert models["reference"]["recommended_precision"] == "int8"
    # transcribe's peak memory: the smallest student, its recommended precision
    peak = by[("transcribe_peak_mb_smallest_student", "student_r83", "fp32")]
    assert peak["value"] == 80.0 and peak["ok"]
    # no speed / WER checks for untrained models
    assert not [c for c in dev["checks"] if c["model"] == "paper_reference" and c["check"] != "size_mb"]


def test_checks_fail_on_big_files_and_slow_models(tmp_path):
    m = fake_model(tmp_path, "s", "scratch", 1_000_000, {"fp32": 10.0, "int8": 10.1}, rtf_torch=0.004,
                   rtf_fp32=0.0035, rtf_int8=0.0045, int8_bytes=1_700_000, fp32_bytes=4_700_000, cold=1.5,
                   cold_peak=120.0)
    by = {(c["check"], c["backend"]): c for c in device_report.checks([m])}
    assert not by[("size_mb", "int8")]["ok"] and not by[("size_mb", "fp32")]["ok"]
    assert not by[("rtf_at_1_thread", "int8")]["ok"]
    assert not by[("speedup_vs_torch_at_1_thread", "fp32")]["ok"]  # 0.004 / 0.0035 = 1.14x
    assert not by[("cold_start_s", "int8")]["ok"]
    assert not by[("transcribe_peak_mb_smallest_student", "int8")]["ok"]
    assert by[("int8_wer_cost_pct", "int8")]["ok"]  # 1 % relative
    assert m["rows"]["int8"]["bytes_per_param"] == pytest.approx(1.7)


# ---------------------------------------------------------------------------------------------- writer
OLD_RESULTS = """# RESULTS

intro

<!-- notes:begin -->
notes stay
<!-- notes:end -->

<!-- device:begin -->
OLD DEVICE TABLE
<!-- device:end -->

<!-- benchmark:begin -->
benchmark stays
<!-- benchmark:end -->
"""


def _opts(recipe: Path, write: bool = True):
    return Options(recipe_dir=recipe, write_results=write)


def test_writer_keeps_other_sections_and_keys(tmp_path, capsys):
    dev = fake_device(tmp_path)
    recipe = tmp_path / "recipe"
    (recipe / "exp" / "benchmark").mkdir(parents=True)
    (recipe / "RESULTS.md").write_text(OLD_RESULTS, encoding="utf-8")
    other = {"systems": [{"name": "x"}], "speedup_to_target": {"0.5": 2.0}, "command": "c", "environment": {"a": 1}}
    (recipe / "benchmark.json").write_text(json.dumps(other, indent=1), encoding="utf-8")
    (recipe / "exp" / "benchmark" / "benchmark.json").write_text(json.dumps(other), encoding="utf-8")
    work = recipe / "exp" / "device"

    device_report.write_outputs(dev, _opts(recipe), work)

    text = (recipe / "RESULTS.md").read_text(encoding="utf-8")
    assert "OLD DEVICE TABLE" not in text
    assert text.startswith("# RESULTS\n\nintro\n")
    for kept in ("<!-- notes:begin -->\nnotes stay\n<!-- notes:end -->",
                 "<!-- benchmark:begin -->\nbenchmark stays\n<!-- benchmark:end -->"):
        assert kept in text
    assert text.count(device_report.BEGIN_MARK) == 1 and text.count(device_report.END_MARK) == 1
    assert text.index(device_report.BEGIN_MARK) < text.index("<!-- benchmark:begin -->")  # replaced in place
    section = text[text.index(device_report.BEGIN_MARK): text.index(device_report.END_MARK)]
    assert "local/device_benchmark.sh --limit 5" in section  # the command
    assert "|model|backend|params|MB|B/param|load s|RTF@1|RTF@2|speed-up@1|latency ms|peak MB|cold start s|" \
           "GFLOP/s@1|WER|int8 cost|" in section
    assert "|student_r83|ONNX int8|1.00 M|1.20|1.20|0.20|0.0020|0.0012|3.00x|10.0|90|0.50|20.0 (20%)|22.0|+10.0%|" \
        in section
    assert "|paper_reference|torch (ESPnet)|30.00 M|" in section
    assert "Paper-scale models" in section and "keep fp32 as the default precision of this model" in section
    assert ("int8 test WER cost, students (<= 3 % relative): 0 of 1 met; **not met**: student_r83 ONNX int8 "
            "10 % (<= 3 %)") in section
    assert f"]({device_report.PLOT_NAME})" in section

    for path in (recipe / "benchmark.json", recipe / "exp" / "benchmark" / "benchmark.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        assert list(data) == [*other, "device"]
        assert {k: data[k] for k in other} == other
        assert data["device"]["models"][1]["name"] == "student_r83"
    assert (recipe / device_report.PLOT_NAME).stat().st_size > 1000
    assert (work / "wer_vs_rtf.png").is_file() and (work / "device.md").is_file()
    assert json.loads((work / "device.json").read_text())["test_set"]["utterances"] == 168
    out = capsys.readouterr().out
    assert "|student_r83|ONNX int8|" in out and device_report.BEGIN_MARK not in out

    # a second run replaces the section again (nothing duplicated), and benchmark.json keeps its keys
    device_report.write_outputs(dev, _opts(recipe), work)
    text2 = (recipe / "RESULTS.md").read_text(encoding="utf-8")
    assert text2 == text
    assert list(json.loads((recipe / "benchmark.json").read_text())) == [*other, "device"]


def test_paper_models_timed_on_a_subset_say_so(tmp_path):
    """--paper_limit: the paper-scale models' table names the subset they were timed on; benchmark.json too."""
    dev = fake_device(tmp_path)
    opts = SimpleNamespace(command="c", test_set="test", limit=0, paper_limit=100, threads=[1, 2], latency_runs=20,
                           cold_runs=3)
    sub = device_report.build_device(dev["models"], opts, EvalSet(Path("wav.scp"), None, None, 168, 528.1),
                                     dev["latency_file"], dev["sgemm_one_core"], dev["environment"],
                                     paper_test=EvalSet(Path("p.scp"), None, None, 100, 301.0))
    assert sub["paper_test_set"] == {"utterances": 100, "audio_seconds": 301.0, "limit": 100}
    text = device_report.render_markdown(sub)
    assert ("### Paper-scale models (random weights: speed and size only; timed on the first 100 test utterances, "
            "5m01s of audio (`--paper_limit`))") in text
    assert dev["paper_test_set"] is None and "timed on the first" not in device_report.render_markdown(dev)


def test_writer_appends_to_a_file_without_the_section_and_creates_benchmark_json(tmp_path):
    dev = fake_device(tmp_path)
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    (recipe / "RESULTS.md").write_text("# RESULTS\n\nbody\n", encoding="utf-8")
    device_report.write_outputs(dev, _opts(recipe), recipe / "exp" / "device")
    text = (recipe / "RESULTS.md").read_text(encoding="utf-8")
    assert text.startswith("# RESULTS\n\nbody\n\n" + device_report.BEGIN_MARK)
    assert list(json.loads((recipe / "benchmark.json").read_text())) == ["device"]


def test_write_results_false_leaves_results_alone(tmp_path):
    dev = fake_device(tmp_path)
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    (recipe / "RESULTS.md").write_text(OLD_RESULTS, encoding="utf-8")
    device_report.write_outputs(dev, _opts(recipe, write=False), tmp_path / "quick")
    assert (recipe / "RESULTS.md").read_text(encoding="utf-8") == OLD_RESULTS
    assert not (recipe / "benchmark.json").exists()
    assert (tmp_path / "quick" / "device.md").is_file()


def test_replace_section_edge_cases():
    sec = device_report.BEGIN_MARK + "\nnew\n" + device_report.END_MARK + "\n"
    assert device_report.replace_section("", sec) == sec
    assert device_report.replace_section("a\n" + sec.replace("new", "old"), sec) == "a\n" + sec


# ---------------------------------------------------------------------------------------------- CLI, options
def test_cli_help_and_option_checks(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.get_parser().parse_args(["--help"])
    assert e.value.code == 0
    assert "--paper_models" in capsys.readouterr().out
    args = cli.get_parser().parse_args(["--recipe_dir", "r", "--threads", "1", "--limit", "5", "--paper_models",
                                        "false"])
    assert args.threads == [1] and args.limit == 5 and args.paper_models is False
    assert cli.get_parser().parse_args(["--recipe_dir", "r", "--paper_limit", "100"]).paper_limit == 100
    for bad in ({"threads": [0]}, {"backends": ["gpu"]}, {"latency_runs": 0}, {"limit": -1}, {"paper_limit": -2}):
        with pytest.raises(UserError):
            device.check_options(Options(recipe_dir=tmp_path, **bad))
    with pytest.raises(UserError):
        device.check_options(Options(recipe_dir=tmp_path / "missing"))


def test_no_models_is_a_user_error(tmp_path):
    (tmp_path / "exp").mkdir()
    with pytest.raises(UserError, match="no model to benchmark"):
        device.run_device_benchmark(Options(recipe_dir=tmp_path, paper_models=False))


def test_export_is_reused_only_for_the_same_checkpoint(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "config.yaml").write_text("a: 1\n")
    (exp / "m.pth").write_bytes(b"weights")
    spec = ModelSpec("m", "reference", exp / "config.yaml", exp / "m.pth")
    out = tmp_path / "onnx"
    out.mkdir()
    assert not device.export_dir_is_current(out, spec)
    for f in ("model.onnx", "model.int8.onnx"):
        (out / f).write_bytes(b"x")
    sha = {"sha256": hashlib.sha256(b"weights").hexdigest(),
           "config_sha256": hashlib.sha256(b"a: 1\n").hexdigest()}
    (out / "meta.json").write_text(json.dumps({"source": sha}))
    assert device.export_dir_is_current(out, spec)
    (exp / "m.pth").write_bytes(b"retrained")
    assert not device.export_dir_is_current(out, spec)


# ---------------------------------------------------------------------------------------------- data
def _tone(seconds: float, f0: float = 300.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * f0 * t) * (t % 0.5 < 0.3)).astype(np.float32)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    """A recipe dir with dump/raw/test (wav.scp with relative paths, text, utt2spk) of 4 utterances."""
    root = tmp_path_factory.mktemp("recipe")
    data = root / "dump" / "raw" / "test"
    (data / "data").mkdir(parents=True)
    scp, text, spk = [], [], []
    for i, sec in enumerate((1.0, 2.5, 6.0, 1.5)):
        sf.write(data / "data" / f"u{i}.wav", _tone(sec, 200 + 100 * i), 16000, subtype="PCM_16")
        scp.append(f"u{i} dump/raw/test/data/u{i}.wav")
        text.append(f"u{i} {'A' * (i + 1)}")
        spk.append(f"u{i} s{i % 2}")
    (data / "wav.scp").write_text("\n".join(scp) + "\n")
    (data / "text").write_text("\n".join(text) + "\n")
    (data / "utt2spk").write_text("\n".join(spk) + "\n")
    return root


def test_test_set_and_latency_file(recipe, tmp_path):
    opts = Options(recipe_dir=recipe, limit=3)
    ts = device.prepare_test_set(opts, tmp_path / "ts")
    assert ts.utterances == 3 and ts.audio_seconds == pytest.approx(9.5)
    lines = ts.scp.read_text().splitlines()
    assert [ln.split()[0] for ln in lines] == ["u0", "u1", "u2"] and all(Path(ln.split()[1]).is_absolute()
                                                                         for ln in lines)
    assert ts.text.read_text().splitlines() == ["u0 A", "u1 AA", "u2 AAA"]
    assert len(ts.utt2spk.read_text().splitlines()) == 3
    assert device.prepare_test_set(opts, tmp_path / "ts2", 2).utterances == 2  # --paper_limit's subset
    lat = device.make_latency_wav(Options(recipe_dir=recipe), tmp_path / "lat.wav")
    assert lat["seconds"] == 5.0 and lat["from"] == ["u2"]  # the shortest utterance of >= 5 s, cut
    assert sf.info(str(tmp_path / "lat.wav")).frames == 80000
    lat = device.make_latency_wav(Options(recipe_dir=recipe, latency_seconds=8.0), tmp_path / "lat8.wav")
    assert lat["seconds"] == 8.0 and lat["from"] == ["u0", "u1", "u2"]  # none long enough: joined


# ---------------------------------------------------------------------------------------------- real probes
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return tiny_onnx.write_model(tmp_path_factory.mktemp("model") / "tiny_onnx")


def test_onnx_probe_in_a_fresh_process_is_torch_free(recipe, tiny_model, tmp_path):
    ts = device.prepare_test_set(Options(recipe_dir=recipe), tmp_path / "ts")
    lat = device.make_latency_wav(Options(recipe_dir=recipe), tmp_path / "lat.wav")
    spec = ModelSpec("tiny", "student", Path("unused"), Path("unused"))
    hyp = tmp_path / "hyp" / "text"
    cmd = device.probe_command("onnx", spec, tiny_model, 1, "int8", scp=ts.scp, latency_wav=lat["file"],
                               latency_runs=3, hyp_out=hyp)
    assert cmd[:3] == [sys.executable, "-m", "espnet_lw.bin.device_probe"]
    res = device.run_probe(cmd, tmp_path / "probe.json", threads=1, cwd=recipe, timeout=120)
    assert res["torch_imported"] is False and res["espnet_imported"] is False
    assert res["backend"] == "onnx" and res["precision"] == "int8" and res["threads"] == 1
    assert res["utterances"] == 4 and res["audio_s"] == pytest.approx(11.0)
    assert res["rtf"] == pytest.approx(res["whole_s"] / res["audio_s"], rel=1e-2) and res["rtf"] > 0
    assert 0 < res["network_s"] <= res["whole_s"] and res["features_s"] > 0
    assert res["load_s"] > 0 and res["import_s"] > 0
    assert res["latency"]["runs"] == 3 and res["latency"]["duration_s"] == pytest.approx(5.0)
    assert res["latency"]["min_ms"] <= res["latency"]["median_ms"] <= res["latency"]["max_ms"]
    assert 10 < res["peak_mb"] < 2000 and res["pid"] != os.getpid()
    # the tiny model says "a" on tones: one hypothesis line per utterance, in order
    hyps = hyp.read_text().splitlines()
    assert [h.split()[0] for h in hyps] == ["u0", "u1", "u2", "u3"] and all(h.split()[1:] for h in hyps)
    # the thread count reaches the child's environment
    res2 = device.run_probe(cmd[:-2] + ["--latency_runs", "1"], tmp_path / "probe2.json", threads=2, cwd=recipe)
    assert res2["latency"]["runs"] == 1
    # score the hypotheses with sclite against the test set's text (every word wrong: 100 %)
    wer = device.score_wer(ts, hyp, tmp_path / "score")
    assert wer == pytest.approx(100.0)


def test_failing_probe_reports_its_log(tmp_path, tiny_model):
    spec = ModelSpec("tiny", "student", Path("unused"), Path("unused"))
    cmd = device.probe_command("onnx", spec, tmp_path / "no_model", 1, "fp32", scp=tmp_path / "no.scp")
    with pytest.raises(RuntimeError, match="probe failed"):
        device.run_probe(cmd, tmp_path / "p.json", threads=1, cwd=tmp_path, timeout=60)


def test_cold_start_of_transcribe_reports_its_own_peak(recipe, tiny_model, tmp_path):
    lat = device.make_latency_wav(Options(recipe_dir=recipe), tmp_path / "lat.wav")
    cmd = [sys.executable, "-c", device.PEAK_WRAPPER, "espnet_lw.bin.transcribe", str(tiny_model), lat["file"],
           "--precision", "int8", "--log_level", "WARNING"]
    _ = np.ones(40_000_000)  # 320 MB in this process: a child's ru_maxrss would report it, VmHWM does not
    res = device.cold_start(cmd, recipe, runs=2, log=tmp_path / "cold.log")
    assert res["runs"] == 2 and 0 < res["min_s"] <= res["median_s"] < 30
    assert res["peak_mb"] is not None and 10 < res["peak_mb"] < 250, shlex.join(cmd)
