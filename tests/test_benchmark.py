"""The benchmark tool (espnet_lw.bin.benchmark) and its recipe wrapper, on fabricated exp trees.

No training here: train.logs are written in ESPnet's format, sclite results come from real
sclite runs on tiny texts, and the per-epoch decoding runs a tiny random lw_ctc model on a few
noise utterances. The whole file takes well under a minute of CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from espnet_lw import benchmark as bm
from espnet_lw.bin import benchmark as benchmark_cli
from espnet_lw.utils.cli import UserError

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2" / "mini_synth" / "lw1"


def need_sclite():
    from espnet_lw.scoring import find_sclite

    try:
        find_sclite()
    except UserError:
        pytest.skip("needs sclite (Debian package sctk)")


# ------------------------------------------------------------------------------ train.log parsing
def epoch_line(n: int, train: str, valid: str) -> str:
    """A line as ESPnet's trainer logs it (humanfriendly timespans; iter/train_time are per-iteration)."""
    return (
        f"[vm] 2026-11-27 03:00:43,626 (trainer:394) INFO: {n}epoch results: [train] iter_time=0.051, "
        f"forward_time=0.920, loss_ctc=110.732, loss=110.732, backward_time=1.021, grad_norm=148.242, "
        f"clip=100.000, loss_scale=1.000, optim_step_time=0.147, optim0_lr0=3.100e-04, train_time=2.174, "
        f"time={train}, total_count=152, [valid] loss_ctc=87.577, cer_ctc=0.911, loss_att=nan, acc=nan, "
        f"cer=nan, wer=nan, loss=87.577, time={valid}, total_count=15"
    )


def write_log(path: Path, epochs: list[tuple[str, str]], extra: list[str] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["[vm] 2026-11-27 02:55:00,000 (trainer:300) INFO: some other line time=99 seconds"]
    lines += [epoch_line(i, t, v) for i, (t, v) in enumerate(epochs, 1)] + list(extra)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("14.81 seconds", 14.81),
        ("5 minutes and 30.52 seconds", 330.52),
        ("1 minute", 60.0),
        ("1 hour, 2 minutes and 3.5 seconds", 3723.5),
        ("2 hours and 1 second", 7201.0),
        ("1 day and 1 hour", 90000.0),
        ("0.5 milliseconds", 0.0005),
        ("12.5", 12.5),
    ],
)
def test_parse_timespan(text, seconds):
    assert bm.parse_timespan(text) == pytest.approx(seconds)


def test_parse_timespan_matches_espnet_formatting():
    """Round trip through humanfriendly, which ESPnet's reporter uses for ``time=``."""
    import datetime

    import humanfriendly

    for secs in (0.25, 59.99, 61.5, 330.52, 3661.2, 7322.5, 90060.0):  # humanfriendly keeps 3 units
        text = humanfriendly.format_timespan(datetime.timedelta(seconds=secs))
        assert bm.parse_timespan(text) == pytest.approx(secs, abs=0.01), text


def test_parse_timespan_rejects_garbage():
    with pytest.raises(ValueError):
        bm.parse_timespan("soon")


def test_parse_epoch_times(tmp_path):
    log = write_log(
        tmp_path / "train.log",
        [("5 minutes and 30.52 seconds", "14.81 seconds"), ("1 hour, 2 minutes and 3 seconds", "5.18 seconds"),
         ("2 minutes", "1 minute and 0.5 seconds")],
        # a resumed run appended to the log reports epoch 3 again: the last line wins
        extra=[epoch_line(3, "3 minutes", "10 seconds")],
    )
    times = bm.parse_epoch_times(log)
    assert list(times) == [1, 2, 3]
    assert times[1] == bm.EpochTime(330.52, 14.81)
    assert times[2].train == pytest.approx(3723.0) and times[2].valid == pytest.approx(5.18)
    assert times[3].total == pytest.approx(190.0)
    assert bm.seconds_list(times) == pytest.approx([345.33, 3728.18, 190.0])
    assert bm.parse_epoch_times(tmp_path / "missing.log") == {}


def test_parse_epoch_times_real_log_if_present():
    """The running mini_synth reference's own log, read only (skipped when not there)."""
    log = RECIPE / "exp" / "asr_reference_mini_raw_bpe256" / "train.log"
    if not log.is_file():
        pytest.skip("no mini_synth reference log on this machine")
    times = bm.parse_epoch_times(log)
    n = sum(1 for line in log.read_text(errors="replace").splitlines() if "epoch results:" in line)
    assert len(times) <= n and all(t.train > 0 and t.valid > 0 for t in times.values())


# ------------------------------------------------------------------------------ speed-up
def sysdict(name, kind, wers, secs, encrl=None):
    return {"name": name, "kind": kind, "wer_per_epoch": {"test": wers}, "seconds_per_epoch": secs,
            "encrl_seconds": encrl}


def test_time_to_reach():
    assert bm.time_to_reach([50, 40, 30], [10, 10, 10], 40) == (2, 20.0)
    assert bm.time_to_reach([50, 40, 30], [10, 10, 10], 40, offset=5) == (2, 25.0)
    assert bm.time_to_reach([None, 35, 30], [10, 10, 10], 40) == (2, 20.0)  # a gap is skipped, its time counts
    assert bm.time_to_reach([50, 45], [10, 10], 40) == (None, None)
    assert bm.time_to_reach([], [], 40) == (None, None)


def test_speedup_reached_later():
    scratch = sysdict("s", "scratch", [90, 60, 45, 40], [100, 100, 100, 100])  # target 40, 400 s
    encrl = sysdict("e", "encrl", [55, 42, 39, 35], [50, 50, 50, 50], encrl=150.0)
    r = bm.compute_speedups(scratch, encrl, cache_seconds=100.0, n_encrl=4, speed_set="test")
    assert r["details"]["target_wer"] == 40 and r["details"]["reached_epoch"] == 3
    assert r["details"]["finetune_seconds_to_target"] == 150.0
    assert r["finetune_only"] == pytest.approx(400 / 150, abs=1e-3)
    assert r["full"] == pytest.approx(400 / (150 + 100 + 150), abs=1e-3)
    assert r["amortised"] == pytest.approx(400 / (150 + 25 + 150), abs=1e-3)


def test_speedup_reached_at_first_epoch():
    scratch = sysdict("s", "scratch", [90, 60], [200, 200])
    encrl = sysdict("e", "encrl", [58, 50], [40, 40], encrl=100.0)
    r = bm.compute_speedups(scratch, encrl, 60.0, 1, "test")
    assert r["details"]["reached_epoch"] == 1
    assert r["finetune_only"] == 10.0
    assert r["full"] == 2.0 and r["amortised"] == 2.0  # one EncRL student: nothing to share


def test_speedup_never_reached():
    scratch = sysdict("s", "scratch", [90, 30], [100, 100])
    encrl = sysdict("e", "encrl", [55, 42, 39], [50, 50, 50], encrl=150.0)
    r = bm.compute_speedups(scratch, encrl, 0.0, 1, "test")
    assert r["full"] is None and r["finetune_only"] is None and r["amortised"] is None
    assert r["details"]["reached_epoch"] is None and r["details"]["target_wer"] == 30


def test_speedup_without_curves():
    r = bm.compute_speedups(sysdict("s", "scratch", [], []), sysdict("e", "encrl", [40], [1], 1.0), 0.0, 1, "test")
    assert r["full"] is None and r["details"]["target_wer"] is None


def test_ratio_key():
    assert [bm.ratio_key(x) for x in (0.5, 1 - 4 / 12, 1 - 2 / 12, 0.0)] == ["0.5", "0.667", "0.833", "0"]


# ------------------------------------------------------------------------------ ablation configs
def test_loss_name():
    assert bm.loss_name({"mse": {"weight": 1.0}, "clip": {"weight": 1.0}}) == "clip+mse"
    assert bm.loss_name({"clip": {}, "mse": {"weight": 0.0}}) == "clip"
    assert bm.loss_name({"mse": {"target": "encoder"}}) == "mse"
    assert bm.loss_name(None) == "clip+mse"  # the EncRL model's default


def test_ablation_configs_from_shipped_student(tmp_path):
    shipped = REPO / "conf" / "student_r67.yaml"
    orig = yaml.safe_load(shipped.read_text())
    paths = bm.write_ablation_configs(shipped, tmp_path / "conf", "student_r67")
    assert set(paths) == {"clip", "mse"}
    assert paths["mse"].name == "student_r67_encrl_mse.yaml"
    for term, path in paths.items():
        conf = yaml.safe_load(path.read_text())
        align = conf["encrl"]["model_conf"]["alignment"]
        assert list(align) == [term]
        # the term's own settings, at weight 1 (the shipped mix weighs CLIP 0.1)
        assert align[term] == {**orig["encrl"]["model_conf"]["alignment"][term], "weight": 1.0}
        # everything else is the shipped config
        rest = {k: v for k, v in conf.items() if k != "encrl"}
        assert rest == {k: v for k, v in orig.items() if k != "encrl"}
        assert {k: v for k, v in conf["encrl"].items() if k != "model_conf"} == \
            {k: v for k, v in orig["encrl"].items() if k != "model_conf"}
        assert path.read_text().startswith("# written by espnet_lw.bin.benchmark")
    assert yaml.safe_load(shipped.read_text()) == orig  # the shipped file is untouched


def test_ablation_config_is_accepted_by_make_student_configs(tmp_path):
    from espnet_lw.bin.make_student_configs import make_configs

    paths = bm.write_ablation_configs(REPO / "conf" / "student_r67.yaml", tmp_path, "student_r67")
    ref = yaml.safe_load((REPO / "conf" / "reference_mini.yaml").read_text())
    (tmp_path / "ref.yaml").write_text(yaml.safe_dump(ref))
    out = make_configs(tmp_path / "ref.yaml", tmp_path / "ref.pth", paths["mse"], "encrl", None)
    assert list(out["encrl.yaml"]["model_conf"]["alignment"]) == ["mse"]
    ref_blocks = ref["encoder_conf"]["num_blocks"]
    assert out["encrl.yaml"]["encoder_conf"]["num_blocks"] == round(ref_blocks * (1 - 0.667))


def test_ablation_needs_the_term():
    with pytest.raises(UserError, match="no 'kl' term"):
        bm.derive_ablation({"encrl": {"model_conf": {"alignment": {"clip": {}, "mse": {}}}}}, "kl")


# ------------------------------------------------------------------------------ fake exp tree
REF_CONF = {"model": "espnet", "encoder": "conformer", "encoder_conf": {"num_blocks": 12}}


def make_result(decode_dir: Path, dset: str, hyp_words: list[str]) -> None:
    """A real sclite result.txt: reference 'a b c d' x 5 utterances vs the given hypotheses."""
    from espnet_lw.scoring import score

    d = decode_dir / dset
    d.mkdir(parents=True, exist_ok=True)
    ref = d / "ref_text"
    ref.write_text("".join(f"u{i} A B C D\n" for i in range(5)))
    (d / "text").write_text("".join(f"u{i} {h}\n" for i, h in enumerate(hyp_words)))
    score(ref, d / "text", d, score_types=("wer",), detail=False)


def make_system(exp: Path, kind: str, blocks: int, secs: list[str], params: int, hyps: dict,
                loss: dict | None = None, encrl_secs: list[str] = ()) -> None:
    exp.mkdir(parents=True)
    conf = dict(REF_CONF) if kind == "reference" else {"model": "lw_ctc", "encoder": "conformer"}
    conf["encoder_conf"] = {"num_blocks": blocks}
    (exp / "config.yaml").write_text(yaml.safe_dump(conf))
    write_log(exp / "train.log", [(s, "10 seconds") for s in secs])
    (exp / "params.txt").write_text(f"{params}\nencoder: 1\n")
    (exp / ".done.stage11").touch()
    if kind != "reference":
        (exp / "conf").mkdir()
    if kind == "scratch":
        (exp / "conf" / "scratch.yaml").write_text("model: lw_ctc\n")
    elif kind == "pruned":
        (exp / "conf" / "blocks.txt").write_text("first\n")
    elif kind == "encrl":
        enc = {"model": "lw_encrl", "encoder_conf": {"num_blocks": blocks},
               "model_conf": {"alignment": loss, "reference_config": "exp/asr_ref/config.yaml"}}
        (exp / "encrl").mkdir()
        (exp / "encrl" / "config.yaml").write_text(yaml.safe_dump(enc))
        write_log(exp / "encrl" / "train.log", [(s, "10 seconds") for s in encrl_secs])
    for dset, hyp in hyps.items():
        make_result(exp / bm.DEFAULT_DECODE, dset, hyp)


def epoch_cache(expdir: Path, name: str, wers: list[float | None], dset: str = "test") -> None:
    entries = {str(e): {"wer": w, "ckpt": "0:0"} for e, w in enumerate(wers, 1) if w is not None}
    path = bm.epoch_cache_path(expdir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"system": name, "sets": {dset: entries}}))


H_GOOD = ["A B C D"] * 4 + ["A B C"]  # 1 error in 20 words: 5 %
H_MID = ["A B C D"] * 3 + ["A B"] * 2  # 4 errors: 20 %
H_BAD = ["A"] * 5  # 15 errors: 75 %


@pytest.fixture
def fake_tree(tmp_path):
    need_sclite()
    recipe = tmp_path / "lw1"
    exp = recipe / "exp"
    make_system(exp / "asr_ref", "reference", 12, ["2 minutes"] * 3, 6_000_000, {"test": H_GOOD, "dev": H_GOOD})
    make_system(exp / "asr_student_r67_scratch", "scratch", 4, ["50 seconds"] * 4, 2_000_000,
                {"test": H_BAD, "dev": H_MID})
    make_system(exp / "asr_student_r67_pruned", "pruned", 4, ["50 seconds"] * 2, 2_000_000, {"test": H_MID})
    clip_mse = {"clip": {"weight": 1.0}, "mse": {"weight": 1.0, "target": "ctc_logp"}}
    make_system(exp / "asr_student_r67_encrl", "encrl", 4, ["50 seconds"] * 2, 2_000_000,
                {"test": H_MID, "dev": H_GOOD}, loss=clip_mse, encrl_secs=["30 seconds"] * 2)
    make_system(exp / "asr_student_r67_encrl_mse", "encrl", 4, ["50 seconds"] * 2, 2_000_000,
                {"test": H_BAD}, loss={"mse": {"weight": 1.0}}, encrl_secs=["30 seconds"] * 2)
    make_system(exp / "asr_student_r83_scratch", "scratch", 2, ["40 seconds"] * 2, 1_000_000, {"test": H_BAD})
    # an EncRL stage dir alone and a moved-aside dir are not systems
    (exp / "asr_student_r67_scratch.old.20260101").mkdir()
    (exp / "asr_student_r67_scratch.old.20260101" / "config.yaml").write_text(yaml.safe_dump(REF_CONF))
    (exp / "stage_times.tsv").write_text(
        "11\ttraining exp/asr_ref\t400\tdone\n"
        "11\treference targets exp/asr_ref/targets/train\t99\tdone\n"
        "11\treference targets exp/asr_ref/targets/train\t0\tskipped\n"
        "11\treference targets exp/asr_ref/targets/train\t120\tdone\n"
    )
    # per-epoch test WERs (ref epoch 1 was deleted by ESPnet: a gap)
    epoch_cache(exp, "ref", [None, 30.0, 20.0])
    epoch_cache(exp, "student_r67_scratch", [90.0, 70.0, 60.0, 50.0])
    epoch_cache(exp, "student_r67_pruned", [55.0, 45.0])
    epoch_cache(exp, "student_r67_encrl", [60.0, 48.0])
    epoch_cache(exp, "student_r67_encrl_mse", [70.0, 65.0])
    (recipe / "RESULTS.md").write_text("# RESULTS\n\nstage tables written by make_results\n")
    return recipe


def test_discover_systems(fake_tree):
    systems = bm.discover_systems(fake_tree / "exp")
    got = [(s.name, s.kind, s.ratio, s.loss) for s in systems]
    assert got == [
        ("ref", "reference", 0.0, None),
        ("student_r67_scratch", "scratch", 0.667, None),
        ("student_r67_pruned", "pruned", 0.667, None),
        ("student_r67_encrl", "encrl", 0.667, "clip+mse"),
        ("student_r67_encrl_mse", "encrl", 0.667, "mse"),
        ("student_r83_scratch", "scratch", 0.833, None),
    ]


def test_report_json_schema_and_numbers(fake_tree):
    env = {"python": "3.11"}
    bench = bm.write_report(fake_tree, fake_tree / "exp", ["dev", "test", "field"],
                            ["test"], "local/benchmark.sh --ratios 67", env=env)
    data = json.loads((fake_tree / "exp" / "benchmark" / "benchmark.json").read_text())
    assert data == json.loads(json.dumps(bench))
    assert json.loads((fake_tree / "benchmark.json").read_text()) == data  # the copy next to RESULTS.md
    for key in ("systems", "speedup_to_target", "speedup_to_target_finetune_only", "command", "environment"):
        assert key in data
    assert data["command"] == "local/benchmark.sh --ratios 67" and data["environment"] == env
    keys = {"name", "kind", "ratio", "loss", "params", "epochs", "train_seconds", "wer", "wer_per_epoch",
            "seconds_per_epoch", "encrl_seconds", "encrl_epochs"}
    by = {s["name"]: s for s in data["systems"]}
    for s in data["systems"]:
        assert set(s) == keys
        assert s["kind"] in bm.KINDS and s["ratio"] in (0, 0.5, 0.667, 0.833)
        assert set(s["wer"]) == {"dev", "test", "field"} and set(s["wer_per_epoch"]) == {"test"}
        assert len(s["seconds_per_epoch"]) == s["epochs"] == len(s["wer_per_epoch"]["test"])
    ref = by["ref"]
    assert ref["loss"] is None and ref["params"] == 6_000_000 and ref["encrl_seconds"] is None
    assert ref["wer"] == {"dev": 5.0, "test": 5.0, "field": None}
    assert ref["wer_per_epoch"]["test"] == [None, 30.0, 20.0]
    assert ref["seconds_per_epoch"] == [130.0] * 3 and ref["train_seconds"] == 390.0
    assert data["reference_cache_seconds"] == 120.0  # the last run that did the work
    enc = by["student_r67_encrl"]
    assert enc["encrl_seconds"] == 80.0  # 2 x (30 s train + 10 s valid)
    assert enc["encrl_epochs"] == 2 and ref["encrl_epochs"] is None
    assert enc["train_seconds"] == 120.0 + 80.0 + 120.0  # fine-tune + EncRL + cache in full
    assert enc["wer"]["test"] == 20.0 and by["student_r67_scratch"]["wer"]["test"] == 75.0
    assert by["student_r67_encrl_mse"]["loss"] == "mse"
    # scratch r67: 4 x 60 s = 240 s, target 50 %; encrl reaches 48 % at fine-tune epoch 2 (120 s)
    assert data["speedup_to_target_finetune_only"] == {"0.667": 2.0}
    assert data["speedup_to_target"] == {"0.667": round(240 / (80 + 120 + 120), 3)}
    assert data["speedup_to_target_amortised"] == {"0.667": round(240 / (80 + 60 + 120), 3)}  # 2 EncRL students
    assert data["speedup_details"]["0.667"]["reached_epoch"] == 2
    # no EncRL student at 0.833: no speed-up entry
    assert "0.833" not in data["speedup_to_target"]


def test_report_markdown_and_plot(fake_tree):
    bm.write_report(fake_tree, fake_tree / "exp", ["dev", "test"], ["test"], "local/benchmark.sh", env={})
    text = (fake_tree / "RESULTS.md").read_text()
    assert text.startswith("# RESULTS\n\nstage tables written by make_results\n")
    assert text.count(bm.BEGIN_MARK) == 1 and text.count(bm.END_MARK) == 1
    assert "|system|kind|ratio|loss|params|epochs|train time|WER dev|WER test|rel. WER impr. vs scratch|" in text
    row = next(line for line in text.splitlines() if line.startswith("|student_r67_encrl|"))
    # (75 - 20) / 75 on test, (20 - 5) / 20 on dev
    assert "|encrl|0.667|clip+mse|2.00 M|2 + 2|" in row  # EncRL + fine-tune epochs
    assert "test +73.3%" in row and "dev +75.0%" in row
    assert "5m20s (ft 2m00s)" in row
    assert "fine-tune only 2.00x" in text and "whole student cost 0.75x" in text
    assert "```sh\nlocal/benchmark.sh\n```" in text
    assert "![WER vs student training wall time](benchmark_wer_vs_time.png)" in text
    png = fake_tree / "exp" / "benchmark" / "wer_vs_time.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert (fake_tree / "benchmark_wer_vs_time.png").read_bytes() == png.read_bytes()
    # regenerating replaces the section (and keeps the command of the earlier run)
    (fake_tree / "RESULTS.md").write_text(text + "\n## later section\n")
    bm.write_report(fake_tree, fake_tree / "exp", ["dev", "test"], ["test"], None, env={})
    again = (fake_tree / "RESULTS.md").read_text()
    assert again.count(bm.BEGIN_MARK) == 1 and again.endswith("## later section\n")
    assert "```sh\nlocal/benchmark.sh\n```" in again


def test_report_keeps_keys_other_tools_own(fake_tree):
    """The device benchmark adds ``device`` to benchmark.json: regenerating the report keeps it."""
    bm.write_report(fake_tree, fake_tree / "exp", ["test"], ["test"], "X", env={})
    for path in (fake_tree / "benchmark.json", fake_tree / "exp" / "benchmark" / "benchmark.json"):
        data = json.loads(path.read_text())
        data["device"] = {"rows": [1]}
        path.write_text(json.dumps(data))
    bm.write_report(fake_tree, fake_tree / "exp", ["test"], ["test"], "X", env={})
    for path in (fake_tree / "benchmark.json", fake_tree / "exp" / "benchmark" / "benchmark.json"):
        data = json.loads(path.read_text())
        assert data["device"] == {"rows": [1]} and data["command"] == "X" and data["systems"]


def test_replace_section():
    sec = f"{bm.BEGIN_MARK}\nnew\n{bm.END_MARK}\n"
    assert bm.replace_section("", sec) == sec
    assert bm.replace_section("# R\n", sec) == "# R\n\n" + sec
    old = f"# R\n\n{bm.BEGIN_MARK}\nold\n{bm.END_MARK}\n\n## after\n"
    assert bm.replace_section(old, sec) == f"# R\n\n{bm.BEGIN_MARK}\nnew\n{bm.END_MARK}\n\n## after\n"


def test_report_cli(fake_tree):
    """``report`` from the command line, run from the recipe dir."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "espnet_lw.bin.benchmark", "report", "--recipe_dir", str(fake_tree),
                           "--test_sets", "test", "--command", "X"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((fake_tree / "benchmark.json").read_text())
    assert data["command"] == "X" and data["environment"]["python"]
    for sub in ("run", "epochs", "report"):
        h = subprocess.run([sys.executable, "-m", "espnet_lw.bin.benchmark", sub, "--help"],
                           capture_output=True, text=True, env=env)
        assert h.returncode == 0 and "--recipe_dir" in h.stdout


# ------------------------------------------------------------------------------ checkpoints + epochs
def test_keep_checkpoints_survive_espnet_cleanup(tmp_path):
    exp = tmp_path / "exp"
    (exp / "asr_a").mkdir(parents=True)
    (exp / "asr_a" / "1epoch.pth").write_bytes(b"one")
    (exp / "asr_a" / "checkpoint.pth").write_bytes(b"x")
    assert bm.keep_checkpoints(exp) == 1
    assert bm.keep_checkpoints(exp) == 0  # already kept
    (exp / "asr_a" / "1epoch.pth").unlink()  # what ESPnet does to epochs out of the n-best
    (exp / "asr_a" / "2epoch.pth").write_bytes(b"two")
    with bm.CheckpointKeeper(exp, interval=0.05):
        pass
    kept = exp / "benchmark" / "ckpt" / "asr_a"
    assert sorted(p.name for p in kept.iterdir()) == ["1epoch.pth", "2epoch.pth"]
    assert (kept / "1epoch.pth").read_bytes() == b"one"
    ckpts = bm.epoch_checkpoints(exp, exp / "asr_a")
    assert ckpts == {1: kept / "1epoch.pth", 2: exp / "asr_a" / "2epoch.pth"}


def tiny_ctc_system(recipe: Path, n_epochs: int = 2):
    """A tiny random lw_ctc 'student' (2 epochs), a 3-utterance noise test set, char tokens."""
    import argparse
    import copy

    import numpy as np
    import soundfile
    import torch

    from espnet_lw.tasks.asr import LWASRTask

    tokens = ["<blank>", "<unk>", "A", "B", "C", "<space>", "<sos/eos>"]
    conf = vars(LWASRTask.get_parser().parse_args(["--token_list", "x", "--output_dir", "x"]))
    exp = recipe / "exp" / "asr_student_r50_scratch"
    exp.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez(exp / "stats.npz", count=np.array(100.0), sum=rng.normal(size=8) * 100, sum_square=np.full(8, 400.0))
    conf.update(
        token_list=tokens, token_type="char", bpemodel=None, frontend="default",
        frontend_conf={"n_fft": 128, "win_length": 128, "hop_length": 64, "n_mels": 8, "fs": 16000},
        specaug=None, normalize="global_mvn", normalize_conf={"stats_file": str(exp / "stats.npz")},
        encoder="conformer", encoder_conf={"output_size": 16, "attention_heads": 2, "linear_units": 32,
                                           "num_blocks": 1, "input_layer": "conv2d", "cnn_module_kernel": 3},
        decoder=None, model="lw_ctc", model_conf={},
    )
    (exp / "config.yaml").write_text(yaml.safe_dump(conf))
    (exp / "conf").mkdir()
    (exp / "conf" / "scratch.yaml").write_text("model: lw_ctc\n")
    write_log(exp / "train.log", [("1 second", "1 second")] * n_epochs)
    for e in range(1, n_epochs + 1):
        torch.manual_seed(e)
        model = LWASRTask.build_model(argparse.Namespace(**copy.deepcopy(conf)))
        torch.save(model.state_dict(), exp / f"{e}epoch.pth")
    data = recipe / "dump" / "raw" / "test"
    data.mkdir(parents=True)
    scp, text, u2s = [], [], []
    for i in range(3):
        wav = data / f"u{i}.wav"
        soundfile.write(wav, (rng.normal(size=8000 + 1000 * i) * 0.1).astype("float32"), 16000)
        scp.append(f"spk{i}-u{i} {wav}")
        text.append(f"spk{i}-u{i} AB C")
        u2s.append(f"spk{i}-u{i} spk{i}")
    for name, lines in (("wav.scp", scp), ("text", text), ("utt2spk", u2s)):
        (data / name).write_text("\n".join(lines) + "\n")
    return exp


def test_decode_epochs_and_cache(tmp_path, monkeypatch):
    need_sclite()
    import torch

    torch.set_num_threads(1)
    recipe = tmp_path / "lw1"
    exp = tiny_ctc_system(recipe)
    expdir = recipe / "exp"
    # epoch 1 survives only as a kept copy (ESPnet deleted it)
    bm.keep_checkpoints(expdir)
    (exp / "1epoch.pth").unlink()
    systems = bm.discover_systems(expdir)
    assert [(s.name, s.kind) for s in systems] == [("student_r50_scratch", "scratch")]
    bm.decode_epochs(expdir, recipe / "dump", systems, ["test"], batch_size=2)
    cache = json.loads(bm.epoch_cache_path(expdir, "student_r50_scratch").read_text())
    entries = cache["sets"]["test"]
    assert sorted(entries) == ["1", "2"]
    for e in ("1", "2"):
        assert 0.0 <= entries[e]["wer"] <= 1000.0
        epoch_dir = expdir / "benchmark" / "epochs" / "student_r50_scratch" / "test" / f"{e}epoch"
        result = epoch_dir / "score_wer" / "result.txt"
        assert "Sum/Avg" in result.read_text()
        hyp = (result.parent.parent / "text").read_text().splitlines()
        assert [h.split()[0] for h in hyp] == ["spk0-u0", "spk1-u1", "spk2-u2"]
    # re-running decodes nothing
    import espnet_lw.inference as inf

    def boom(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(inf, "build_speech2text", boom)
    bm.decode_epochs(expdir, recipe / "dump", systems, ["test"])
    # the report picks the cached curve up
    bench = bm.build_benchmark(expdir, ["test"], ["test"], "cmd", env={})
    s = bench["systems"][0]
    assert s["wer_per_epoch"]["test"] == [entries["1"]["wer"], entries["2"]["wer"]]
    assert s["ratio"] is None  # no reference in this tree: the ratio is unknown


def test_decode_epochs_refuses_a_checkpoint_of_another_model(tmp_path):
    need_sclite()
    import torch

    recipe = tmp_path / "lw1"
    exp = tiny_ctc_system(recipe, n_epochs=2)
    state = torch.load(exp / "2epoch.pth")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, exp / "2epoch.pth")
    systems = bm.discover_systems(recipe / "exp")
    with pytest.raises(UserError, match="does not fit"):
        bm.decode_epochs(recipe / "exp", recipe / "dump", systems, ["test"])


# ------------------------------------------------------------------------------ run planning + wrapper
def fake_recipe(tmp_path) -> Path:
    recipe = tmp_path / "lw1"
    recipe.mkdir()
    shutil.copy2(RECIPE / "run.sh", recipe / "run.sh")
    shutil.copytree(RECIPE / "local", recipe / "local")
    os.symlink(REPO / "conf", recipe / "conf")
    return recipe


def test_run_dry_run_plans_every_system(tmp_path):
    recipe = fake_recipe(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "espnet_lw.bin.benchmark", "run", "--recipe_dir", str(recipe), "--ratios", "50 83",
         "--student_args=--max_epoch 2", "--dry_run", "--", "--nbpe", "48"],
        capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    cmds = proc.stdout.splitlines()
    assert cmds[0] == ("./run.sh --stage 1 --stop_stage 13 --test_sets 'dev test field' --expdir exp --dumpdir dump "
                       "--nbpe 48")
    tags = [c.split("--student_tag ")[1].split()[0] for c in cmds[1:]]
    assert tags == ["student_r50_scratch", "student_r50_pruned", "student_r50_encrl", "student_r83_scratch",
                    "student_r83_pruned", "student_r83_encrl", "student_r67_encrl_clip", "student_r67_encrl_mse"]
    assert all("--student_args '--max_epoch 2'" in c and c.endswith("--nbpe 48") for c in cmds[1:])
    assert "--student_config exp/benchmark/conf/student_r67_encrl_mse.yaml --student_mode encrl" in cmds[-1]
    assert (recipe / "exp/benchmark/conf/student_r67_encrl_clip.yaml").is_file()


def test_run_refuses_reserved_and_unknown_ratio(tmp_path):
    recipe = fake_recipe(tmp_path)
    with pytest.raises(UserError, match="--test_sets is set by the benchmark"):
        benchmark_cli.main(["run", "--recipe_dir", str(recipe), "--dry_run", "--", "--test_sets", "x"])
    with pytest.raises(UserError, match="no student config for ratio 99"):
        benchmark_cli.main(["run", "--recipe_dir", str(recipe), "--ratios", "99", "--dry_run"])
    with pytest.raises(UserError, match="only the 'run' subcommand"):
        benchmark_cli.main(["report", "--recipe_dir", str(recipe), "--", "--nbpe", "48"])


def test_wrapper_passes_options(tmp_path):
    """local/benchmark.sh splits its own options from run.sh's (a stand-in python records the call)."""
    recipe = fake_recipe(tmp_path)
    fake_py = tmp_path / "py"
    fake_py.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > "$(dirname "$0")/argv"\n')
    fake_py.chmod(0o755)
    proc = subprocess.run(
        ["local/benchmark.sh", "--ratios", "83", "--python", str(fake_py), "--student_args", "--max_epoch 1",
         "--nbpe", "48", "--asr_args", "--max_epoch 1 --batch_bins 1", "--epoch_test_sets=dev test"],
        cwd=recipe, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv[:4] == ["-m", "espnet_lw.bin.benchmark", "run", "--recipe_dir"]
    assert argv[argv.index("--ratios") + 1] == "83"
    assert "--student_args=--max_epoch 1" in argv
    assert argv[argv.index("--epoch_test_sets") + 1] == "dev test"
    assert argv[argv.index("--") + 1:] == ["--nbpe", "48", "--asr_args", "--max_epoch 1 --batch_bins 1"]
    assert argv[argv.index("--command") + 1].startswith("local/benchmark.sh --ratios 83")
