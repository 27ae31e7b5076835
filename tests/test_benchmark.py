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
from espnet_lw.benchmark.runner import check_modes
from espnet_lw.benchmark.systems import system_kind
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
def epoch_line(n: int, train: str, valid: str, count: int = 152, cer: str = "0.911") -> str:
    """A line as ESPnet's trainer logs it (humanfriendly timespans; iter/train_time are per-iteration;
    total_count: the training iterations so far, cumulative over epochs; cer: the valid cer_ctc field,
    '' for none, as an EncRL step logs)."""
    cer_field = f"cer_ctc={cer}, " if cer else ""
    return (
        f"[vm] 2026-11-27 03:00:43,626 (trainer:394) INFO: {n}epoch results: [train] iter_time=0.051, "
        f"forward_time=0.920, loss_ctc=110.732, loss=110.732, backward_time=1.021, grad_norm=148.242, "
        f"clip=100.000, loss_scale=1.000, optim_step_time=0.147, optim0_lr0=3.100e-04, train_time=2.174, "
        f"time={train}, total_count={count}, [valid] loss_ctc=87.577, {cer_field}loss_att=nan, acc=nan, "
        f"cer=nan, wer=nan, loss=87.577, time={valid}, total_count=15"
    )


def write_log(path: Path, epochs: list[tuple[str, str]], extra: list[str] = (), per_epoch: int = 100,
              cers: list[str] | None = None) -> Path:
    """A train.log with one epoch line per ``(train, valid)`` time, ``per_epoch`` iterations each, the valid
    CER of each epoch from ``cers`` (fractions as logged; default 0.911 everywhere)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["[vm] 2026-11-27 02:55:00,000 (trainer:300) INFO: some other line time=99 seconds"]
    cers = cers if cers is not None else ["0.911"] * len(epochs)
    lines += [epoch_line(i, t, v, per_epoch * i, c) for i, ((t, v), c) in enumerate(zip(epochs, cers), 1)]
    lines += list(extra)
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
    assert times[1] == bm.EpochTime(330.52, 14.81, 100, 91.1)  # cer_ctc=0.911 of [valid], in percent
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


# ------------------------------------------------------------------------------ updates + time to target
def test_updates_from_total_count(tmp_path):
    log = write_log(tmp_path / "train.log", [("1 second", "1 second")] * 3, per_epoch=110)
    times = bm.parse_epoch_times(log)
    assert [t.count for t in times.values()] == [110, 220, 330]
    assert bm.updates_list(times) == [110, 110, 110]
    assert bm.updates_list(times, accum_grad=4) == [27, 27, 27]  # the trainer steps every 4th iteration
    # an epoch missing from the log: its updates and the next epoch's are unknown, not guessed
    gap = {1: times[1], 3: times[3]}
    assert bm.updates_list(gap) == [110, None, None]


def test_time_to_reach():
    assert bm.time_to_reach([50, 40, 30], [10, 10, 10], 40) == (2, 20.0)
    assert bm.time_to_reach([50, 40, 30], [10, 10, 10], 40, offset=5) == (2, 25.0)
    assert bm.time_to_reach([None, 35, 30], [10, 10, 10], 40) == (2, 20.0)  # a gap is skipped, its time counts
    assert bm.time_to_reach([50, 45], [10, 10], 40) == (None, None)
    assert bm.time_to_reach([], [], 40) == (None, None)


def test_time_to_target_on_cumulative_costs():
    wall = bm.cumulative([10, 10, 10], 5.0)
    assert wall == [15.0, 25.0, 35.0]
    assert bm.cumulative([10, None, 10], 0.0) == [10.0, None, None]  # unknown from there on
    r = bm.time_to_target([50, 40, 30], {"wall_seconds": wall, "updates": [100, 200, 300]}, 40)
    assert r == {"reached": True, "epoch": 2, "wall_seconds": 25.0, "updates": 200}
    never = bm.time_to_target([50, 45], {"wall_seconds": [1, 2]}, 40)
    assert never == {"reached": False, "epoch": None, "wall_seconds": None}
    assert bm.mean_curve([[50, 40, None], [60, 30, 20]]) == [55, 35, None]


def test_ratio_key():
    assert [bm.ratio_key(x) for x in (0.5, 1 - 4 / 12, 1 - 2 / 12, 0.0)] == ["0.5", "0.667", "0.833", "0"]


# ------------------------------------------------------------------------------ ablation configs
def test_loss_name():
    assert bm.loss_name({"mse": {"weight": 1.0}, "clip": {"weight": 1.0}}) == "clip+mse"
    assert bm.loss_name({"clip": {}, "mse": {"weight": 0.0}}) == "clip"
    assert bm.loss_name({"mse": {"target": "encoder"}}) == "mse"
    assert bm.loss_name(None) == "clip+mse"  # the EncRL model's default
    assert bm.loss_name({"clip": {}, "layers": {}, "mse": {}}) == "clip+mse+layers"


def test_ablation_configs_from_shipped_student(tmp_path):
    shipped = REPO / "conf" / "student_r67.yaml"
    orig = yaml.safe_load(shipped.read_text())
    paths = bm.write_ablation_configs(shipped, tmp_path / "conf", "student_r67")
    assert set(paths) == {"clip", "mse", "nokd"}  # nokd: see test_ablation_without_the_fine_tunes_kd
    assert paths["mse"].name == "student_r67_encrl_mse.yaml"
    for term, path in ((t, paths[t]) for t in ("clip", "mse")):
        conf = yaml.safe_load(path.read_text())
        align = conf["encrl"]["model_conf"]["alignment"]
        assert list(align) == [term]
        # the term's own settings, at weight 1 (the shipped mix weighs CLIP 0.1: the ablation re-weighs it)
        assert align[term] == {**orig["encrl"]["model_conf"]["alignment"][term], "weight": 1.0}
        if term == "clip":
            assert float(orig["encrl"]["model_conf"]["alignment"]["clip"].get("weight", 1.0)) != 1.0
        # everything else is the shipped config
        rest = {k: v for k, v in conf.items() if k != "encrl"}
        assert rest == {k: v for k, v in orig.items() if k != "encrl"}
        assert {k: v for k, v in conf["encrl"].items() if k != "model_conf"} == \
            {k: v for k, v in orig["encrl"].items() if k != "model_conf"}
        assert path.read_text().startswith("# written by espnet_lw.bin.benchmark")
    assert yaml.safe_load(shipped.read_text()) == orig  # the shipped file is untouched


def test_ablation_config_is_accepted_by_make_student_configs(tmp_path, monkeypatch):
    from espnet_lw.bin.make_student_configs import make_configs
    from espnet_lw.models import student_config

    monkeypatch.setattr(student_config, "check_reference_cache", lambda *a: None)  # "cache": no real one here
    paths = bm.write_ablation_configs(REPO / "conf" / "student_r67.yaml", tmp_path, "student_r67")
    ref = yaml.safe_load((REPO / "conf" / "reference_mini.yaml").read_text())
    (tmp_path / "ref.yaml").write_text(yaml.safe_dump(ref))
    out = make_configs(tmp_path / "ref.yaml", tmp_path / "ref.pth", paths["mse"], "encrl", "cache")
    assert list(out["encrl.yaml"]["model_conf"]["alignment"]) == ["mse"]
    assert out["finetune.yaml"]["model_conf"]["kd"] == {"weight": 1.0, "temperature": 2.0}
    nokd = make_configs(tmp_path / "ref.yaml", tmp_path / "ref.pth", paths["nokd"], "encrl", None)
    assert "kd" not in (nokd["finetune.yaml"].get("model_conf") or {}) and nokd["student.json"]["kd"] is None
    ref_blocks = ref["encoder_conf"]["num_blocks"]
    assert out["encrl.yaml"]["encoder_conf"]["num_blocks"] == round(ref_blocks * (1 - 0.667))


def test_ablation_without_the_fine_tunes_kd(tmp_path):
    """A student whose fine-tune has KD (finetune.kd, the shipped ones) also gets the ablation without it:
    EncRL alone."""
    src = REPO / "conf" / "student_r67.yaml"
    orig = yaml.safe_load(src.read_text())
    paths = bm.write_ablation_configs(src, tmp_path, "student_r67")
    assert set(paths) == {"clip", "mse", "nokd"} and paths["nokd"].name == "student_r67_encrl_nokd.yaml"
    nokd = yaml.safe_load(paths["nokd"].read_text())
    assert "kd" not in nokd["finetune"] and {**nokd["finetune"], "kd": orig["finetune"]["kd"]} == orig["finetune"]
    assert {k: v for k, v in nokd.items() if k != "finetune"} == {k: v for k, v in orig.items() if k != "finetune"}
    assert yaml.safe_load(paths["clip"].read_text())["finetune"]["kd"] == orig["finetune"]["kd"]
    with pytest.raises(UserError, match="no kd term"):
        bm.derive_without_finetune_kd({"finetune": {"max_epoch": 7}})


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
                loss: dict | None = None, encrl_secs: list[str] = (), student: dict | None = None) -> None:
    exp.mkdir(parents=True)
    conf = dict(REF_CONF) if kind == "reference" else {"model": "lw_ctc", "encoder": "conformer"}
    conf["encoder_conf"] = {"num_blocks": blocks}
    (exp / "config.yaml").write_text(yaml.safe_dump(conf))
    write_log(exp / "train.log", [(s, "10 seconds") for s in secs])
    (exp / "params.txt").write_text(f"{params}\nencoder: 1\n")
    (exp / ".done.stage11").touch()
    if kind != "reference":
        (exp / "conf").mkdir()
    if student is not None:
        (exp / "conf" / "student.json").write_text(json.dumps(student))
    if kind == "scratch":
        (exp / "conf" / "scratch.yaml").write_text("model: lw_ctc\n")
    elif kind == "pruned":
        (exp / "conf" / "blocks.txt").write_text("last\n")
    elif kind == "encrl":
        enc = {"model": "lw_encrl", "encoder_conf": {"num_blocks": blocks},
               "model_conf": {"alignment": loss, "reference_config": "exp/asr_ref/config.yaml",
                              "init_from_reference": "every_other"}}
        (exp / "encrl").mkdir()
        (exp / "encrl" / "config.yaml").write_text(yaml.safe_dump(enc))
        write_log(exp / "encrl" / "train.log", [(s, "10 seconds") for s in encrl_secs])
    for dset, hyp in hyps.items():
        make_result(exp / bm.DEFAULT_DECODE, dset, hyp)


def epoch_cache(expdir: Path, name: str, wers: list[float | None], dset: str = "dev") -> None:
    entries = {str(e): {"wer": w, "ckpt": "0:0"} for e, w in enumerate(wers, 1) if w is not None}
    path = bm.epoch_cache_path(expdir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"system": name, "sets": {dset: entries}}))


H_GOOD = ["A B C D"] * 4 + ["A B C"]  # 1 error in 20 words: 5 %
H_MID = ["A B C D"] * 3 + ["A B"] * 2  # 4 errors: 20 %
H_BAD = ["A"] * 5  # 15 errors: 75 %
CLEAN = {"commit": "c0ffee", "clean": True, "dirty": []}


@pytest.fixture
def fake_tree(tmp_path):
    """Students of ratio 0.667 (one seed each, except scratch: seeds 1 and 2) and one of 0.833.

    Every CTC epoch costs 50 s train + 10 s valid and 100 updates; EncRL epochs 30 + 10 s, 100 updates.
    """
    need_sclite()
    recipe = tmp_path / "lw1"
    exp = recipe / "exp"
    make_system(exp / "asr_ref", "reference", 12, ["2 minutes"] * 3, 6_000_000, {"test": H_GOOD, "dev": H_GOOD})
    for seed in (1, 2):
        make_system(exp / f"asr_student_r67_scratch_seed{seed}", "scratch", 4, ["50 seconds"] * 4, 2_000_000,
                    {"test": H_BAD, "dev": H_MID if seed == 1 else H_BAD})
    make_system(exp / "asr_student_r67_pruned_seed1", "pruned", 4, ["50 seconds"] * 2, 2_000_000, {"test": H_MID})
    clip_mse = {"clip": {"weight": 1.0}, "mse": {"weight": 1.0, "target": "ctc_logp"}}
    make_system(exp / "asr_student_r67_encrl_seed1", "encrl", 4, ["50 seconds"] * 2, 2_000_000,
                {"test": H_MID, "dev": H_GOOD}, loss=clip_mse, encrl_secs=["30 seconds"] * 2)
    make_system(exp / "asr_student_r67_encrl_mse_seed1", "encrl", 4, ["50 seconds"] * 2, 2_000_000,
                {"test": H_BAD}, loss={"mse": {"weight": 1.0}}, encrl_secs=["30 seconds"] * 2)
    # KD: known only from its student.json (no conf/kd.yaml, a misleading blocks.txt)
    make_system(exp / "asr_student_r67_kd_seed1", "kd", 4, ["50 seconds"] * 2, 2_000_000, {"test": H_MID},
                student={"mode": "kd", "ratio": 0.667, "seed": 1, "init": "every_other", "epochs": 2,
                         "kd": {"weight": 0.5, "temperature": 2.0}})
    (exp / "asr_student_r67_kd_seed1" / "conf" / "blocks.txt").write_text("every_other\n")
    make_system(exp / "asr_student_r83_scratch_seed1", "scratch", 2, ["40 seconds"] * 2, 1_000_000, {"test": H_BAD})
    # an EncRL stage dir alone and a moved-aside dir are not systems
    (exp / "asr_student_r67_encrl_stage").mkdir()
    (exp / "asr_student_r67_encrl_stage" / "config.yaml").write_text(yaml.safe_dump({"model": "lw_encrl"}))
    (exp / "asr_student_r67_scratch_seed1.old.20260101").mkdir()
    (exp / "asr_student_r67_scratch_seed1.old.20260101" / "config.yaml").write_text(yaml.safe_dump(REF_CONF))
    (exp / "stage_times.tsv").write_text(
        "11\ttraining exp/asr_ref\t400\tdone\n"
        "11\treference targets exp/asr_ref/targets/train\t99\tdone\n"
        "11\treference targets exp/asr_ref/targets/train\t0\tskipped\n"
        "11\treference targets exp/asr_ref/targets/train\t120\tdone\n"
    )
    # per-epoch dev WERs (ref epoch 1 was deleted by ESPnet: a gap). Scratch, mean over its two seeds:
    # [85, 50, 57.5, 50]: target 50 (its last epoch), first reached at its epoch 2, not at its last
    epoch_cache(exp, "ref", [None, 30.0, 20.0])
    epoch_cache(exp, "student_r67_scratch_seed1", [80.0, 52.0, 60.0, 48.0])
    epoch_cache(exp, "student_r67_scratch_seed2", [90.0, 48.0, 55.0, 52.0])
    epoch_cache(exp, "student_r67_pruned_seed1", [55.0, 45.0])
    epoch_cache(exp, "student_r67_encrl_seed1", [48.0, 40.0])
    epoch_cache(exp, "student_r67_encrl_mse_seed1", [70.0, 65.0])
    epoch_cache(exp, "student_r67_kd_seed1", [52.0, 49.0])
    (recipe / "RESULTS.md").write_text("# RESULTS\n\nstage tables written by make_results\n")
    return recipe


def test_discover_systems(fake_tree):
    systems = bm.discover_systems(fake_tree / "exp")
    got = [(s.name, s.kind, s.ratio, s.loss, s.seed, s.group) for s in systems]
    assert got == [
        ("ref", "reference", 0.0, None, None, "ref"),
        ("student_r67_scratch_seed1", "scratch", 0.667, None, 1, "student_r67_scratch"),
        ("student_r67_scratch_seed2", "scratch", 0.667, None, 2, "student_r67_scratch"),
        ("student_r67_pruned_seed1", "pruned", 0.667, None, 1, "student_r67_pruned"),
        ("student_r67_kd_seed1", "kd", 0.667, "ctc+kd(temperature=2.0, weight=0.5)", 1, "student_r67_kd"),
        ("student_r67_encrl_seed1", "encrl", 0.667, "clip+mse", 1, "student_r67_encrl"),
        ("student_r67_encrl_mse_seed1", "encrl", 0.667, "mse", 1, "student_r67_encrl_mse"),
        ("student_r83_scratch_seed1", "scratch", 0.833, None, 1, "student_r83_scratch"),
    ]
    by = {s.name: s for s in systems}
    assert by["student_r67_kd_seed1"].identity == "student.json" and by["student_r67_kd_seed1"].init == "every_other"
    assert by["student_r67_pruned_seed1"].identity == "heuristics" and by["student_r67_pruned_seed1"].init == "last"
    assert by["student_r67_encrl_seed1"].init == "every_other" and by["student_r67_scratch_seed1"].init == "random"
    names = {s.name for s in systems}
    assert "student_r67_encrl_stage" not in names and not any(".old." in n for n in names)


def test_encrl_student_with_kd_in_its_fine_tune_is_labelled(tmp_path):
    exp = tmp_path / "exp"
    clip_mse = {"clip": {"weight": 0.1}, "mse": {"weight": 1.0}}
    kd_conf = {"weight": 1.0, "temperature": 2.0}
    for name, kd in (("student_r67_encrl_seed1", kd_conf), ("student_r67_encrl_nokd_seed1", None)):
        make_system(exp / f"asr_{name}", "encrl", 4, ["50 seconds"], 2_000_000, {}, loss=clip_mse,
                    encrl_secs=["30 seconds"], student={"mode": "encrl", "ratio": 0.667, "seed": 1, "kd": kd,
                                                        "init": "every_other", "epochs": 2})
    by = {s.name: s for s in bm.discover_systems(exp)}
    assert by["student_r67_encrl_seed1"].loss == "clip+mse; fine-tune ctc+kd"
    assert by["student_r67_encrl_nokd_seed1"].loss == "clip+mse"


def test_student_json_wins_over_heuristics(tmp_path):
    exp = tmp_path / "asr_x"
    (exp / "conf").mkdir(parents=True)
    (exp / "conf" / "scratch.yaml").write_text("model: lw_ctc\n")
    conf = {"model": "lw_ctc"}
    assert system_kind(exp, conf) == "scratch"
    assert system_kind(exp, conf, {"mode": "control"}) == "control"
    (exp / "conf" / "control.yaml").write_text("model: lw_ctc\n")
    assert system_kind(exp, conf) == "control"  # an old dir: conf/<mode>.yaml
    assert system_kind(exp, {"model": "lw_encrl"}, {"mode": "encrl"}) is None


def test_report_json_schema_and_numbers(fake_tree):
    env = {"python": "3.11"}
    bench = bm.write_report(fake_tree, fake_tree / "exp", ["dev", "test", "field_test"],
                            ["dev"], "local/benchmark.sh --ratios 67", env=env)
    data = json.loads((fake_tree / "exp" / "benchmark" / "benchmark.json").read_text())
    assert data == json.loads(json.dumps(bench))
    assert json.loads((fake_tree / "benchmark.json").read_text()) == data  # the copy next to RESULTS.md
    for key in ("systems", "comparison", "target_set", "command", "provenance", "environment", "definitions"):
        assert key in data
    assert data["command"] == "local/benchmark.sh --ratios 67" and data["environment"] == env
    assert data["target_set"] == "dev" and data["provenance"] is None
    keys = {f.name for f in __import__("dataclasses").fields(bm.System)}
    by = {s["name"]: s for s in data["systems"]}
    for s in data["systems"]:
        assert set(s) == keys
        assert s["kind"] in bm.KINDS and s["ratio"] in (0, 0.5, 0.667, 0.833)
        assert set(s["wer"]) == {"dev", "test", "field_test"} and set(s["wer_per_epoch"]) == {"dev"}
        assert len(s["seconds_per_epoch"]) == s["epochs"] == len(s["wer_per_epoch"]["dev"])
        assert s["updates_per_epoch"] == [100] * s["epochs"]
    ref = by["ref"]
    assert ref["loss"] is None and ref["params"] == 6_000_000 and ref["encrl_seconds"] is None
    assert ref["wer"] == {"dev": 5.0, "test": 5.0, "field_test": None}
    assert ref["wer_per_epoch"]["dev"] == [None, 30.0, 20.0]
    assert ref["seconds_per_epoch"] == [130.0] * 3 and ref["train_seconds"] == 390.0
    assert data["reference_cache_seconds"] == 120.0  # the last run that did the work
    assert data["cache_users"] == 3  # encrl, encrl_mse, kd
    enc = by["student_r67_encrl_seed1"]
    assert enc["encrl_seconds"] == 80.0 and enc["encrl_updates"] == 200  # 2 x (30 s train + 10 s valid)
    assert enc["encrl_epochs"] == 2 and ref["encrl_epochs"] is None
    assert enc["cache_share_seconds"] == 40.0 and by["student_r67_pruned_seed1"]["cache_share_seconds"] == 0.0
    assert enc["train_seconds"] == 120.0 + 80.0 + 40.0  # fine-tune + EncRL + cache share
    comp = data["comparison"]["0.667"]
    # the target: dev only, the mean of the scratch seeds' last epochs (48 and 52)
    assert comp["target"]["set"] == "dev" and comp["target"]["wer"] == 50.0 and comp["target"]["seeds"] == [1, 2]
    rows = {r["name"]: r for r in comp["systems"]}
    assert comp["main_encrl"] == "student_r67_encrl"
    assert rows["student_r67_encrl_mse"]["role"] == "ablation" and rows["student_r67_kd"]["role"] == "baseline"
    sc = rows["student_r67_scratch"]
    # scratch reaches its own target at epoch 2 of 4 (mean curve 85, 50, ...): 2 x 60 s, 200 updates
    assert sc["cost_to_target"]["epoch"] == 2 and sc["cost_to_target"]["wall_seconds"] == 120.0
    assert sc["cost_to_target"]["updates"] == 200
    assert [p["epoch"] for p in sc["cost_to_target"]["per_seed"]] == [4, 2]  # seed 1 alone: only at its last
    assert sc["wer"]["test"] == {"mean": 75.0, "std": 0.0, "min": 75.0, "max": 75.0, "n": 2, "values": [75.0, 75.0]}
    assert sc["wer"]["dev"]["mean"] == 47.5 and sc["wer"]["dev"]["n"] == 2
    ec = rows["student_r67_encrl"]["cost_to_target"]
    # EncRL: cache share 40 s + EncRL 80 s / 200 updates + its first fine-tune epoch 60 s / 100 updates
    assert ec["epoch"] == 1 and ec["wall_seconds"] == 180.0 and ec["updates"] == 300
    assert ec["finetune_only_wall_seconds"] == 60.0
    assert rows["student_r67_encrl"]["speedup_vs_scratch"]["wall_seconds"] == round(120 / 180, 3)
    assert rows["student_r67_encrl"]["speedup_vs_scratch"]["updates"] == round(200 / 300, 3)
    kd = rows["student_r67_kd"]["cost_to_target"]
    assert kd["epoch"] == 2 and kd["wall_seconds"] == 40.0 + 120.0 and kd["updates"] == 200
    fastest = rows["student_r67_encrl"]["speedup_vs_fastest_baseline"]
    assert fastest["wall_seconds"]["baseline"] == "student_r67_pruned"  # 120 s, before scratch by name
    assert rows["student_r67_encrl_mse"]["cost_to_target"]["reached"] is False
    # bootstrap: EncRL (20 %) against scratch (75 % on every seed): every resample favours EncRL
    b = rows["student_r67_scratch"]["bootstrap_vs_encrl"]["test"]
    assert b["delta"] == 55.0 and b["low"] > 0 and b["excludes_zero"] and b["n_utts"] == 5
    assert rows["student_r67_kd"]["bootstrap_vs_encrl"]["test"]["delta"] == 0.0
    assert rows["student_r67_encrl"]["bootstrap_vs_encrl"] is None
    # no EncRL student at 0.833: no main EncRL, no bootstrap, the scratch target alone
    assert data["comparison"]["0.833"]["main_encrl"] is None


def clean_record(expdir: Path) -> None:
    """The provenance record a clean ``benchmark run`` at commit c0ffee leaves."""
    path = expdir / "benchmark" / "provenance.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    run = {"date": "d", "command": "local/benchmark.sh", "commit": "c0ffee", "clean": True, "dirty": [],
           "allow_dirty": False, "warnings": [], "machine": {"cpu": "CPU X (2 logical cores)", "gpu": "none detected"}}
    path.write_text(json.dumps({"commit": "c0ffee", "runs": [run], "warnings": [], "clean": True}))


def test_report_markdown_plot_and_logs(fake_tree):
    clean_record(fake_tree / "exp")
    bm.write_report(fake_tree, fake_tree / "exp", ["dev", "test"], ["dev"], "local/benchmark.sh", env={},
                    provenance=bm.check_report(fake_tree, fake_tree / "exp", "report", False, state=CLEAN))
    text = (fake_tree / "RESULTS.md").read_text()
    assert text.startswith("# RESULTS\n\nstage tables written by make_results\n")
    assert text.count(bm.BEGIN_MARK) == 1 and text.count(bm.END_MARK) == 1
    assert "### Ratio 0.667: dev target 50.00 % (mean over 2 scratch seeds" in text
    row = next(line for line in text.splitlines() if line.startswith("|student_r67_encrl [clip+mse]|"))
    assert "|encrl|every_other|2.00 M|2 + 2|" in row  # EncRL + fine-tune epochs
    assert "(reference point)" in row and "3m00s (ep. 1/2)|300|0.67x / 0.67x|" in row
    srow = next(line for line in text.splitlines() if line.startswith("|student_r67_scratch|"))
    assert "75.0 ± 0.0 (n=2, 75.0-75.0)" in srow and "+55.0 [" in srow and "] *|" in srow
    assert "2m00s (ep. 2/4)|200|1.00x / 1.00x|" in srow
    assert "not reached" in next(x for x in text.splitlines() if x.startswith("|student_r67_encrl_mse (ablation)"))
    # the summary against issue 10's bars: EncRL's 20.0 only ties pruned's (not a win), beats scratch's 75.0
    # by 73.3 %, reaches the dev target slower than scratch (0.67x); no control here, no EncRL at 83.3 %
    assert "### Against the bars (issue 10)" in text
    bars = next(x for x in text.splitlines() if x.startswith("|0.667|"))
    assert bars.startswith("|0.667|20.0|20.0 (`student_r67_pruned`)|**not met**|-|+73.3 % (bar >= 20 %: met)|")
    assert "bars 3x / 1.5x; wall 0.67x / " in bars and "**not met**" in bars
    # the reference's 5.0 against scratch's 75.0: the most a student that only matches its reference can get
    assert "|+73.3 % (bar >= 20 %: met)|+93.3 %|bars 3x" in bars
    bars_table = text.split("### Against the bars (issue 10)")[1].split("###")[0]
    assert not any(x.startswith("|0.833|") for x in bars_table.splitlines())
    assert "```sh\nlocal/benchmark.sh\n```" in text and "WARNING" not in text
    assert "commit `c0ffee` (clean tree; 1 invocation(s)), on CPU X (2 logical cores):" in text
    assert "![WER vs student training wall time](benchmark_wer_vs_time.png)" in text
    png = fake_tree / "exp" / "benchmark" / "wer_vs_time.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert (fake_tree / "benchmark_wer_vs_time.png").read_bytes() == png.read_bytes()
    # the logs behind the numbers, next to RESULTS.md
    logs = fake_tree / "logs" / "benchmark"
    log = (logs / "student_r67_encrl_seed1.train.log").read_text().splitlines()
    assert len(log) == 2 and all("epoch results:" in x for x in log)
    assert len((logs / "student_r67_encrl_seed1.encrl.train.log").read_text().splitlines()) == 2
    tsv = (logs / "student_r67_encrl_seed1.epochs.tsv").read_text().splitlines()
    assert tsv[0].split("\t") == ["epoch", "wall_seconds", "updates", "cum_wall_seconds", "cum_updates",
                                  "cum_audio_seconds", "wer_dev", "valid_cer"]
    assert tsv[1].split("\t")[:5] == ["1", "60.0", "100", "180.0", "300.0"]
    assert tsv[1].split("\t")[-1] == "91.1"
    errs = (logs / "test.utt_errors.tsv").read_text().splitlines()
    assert errs[0].startswith("utterance\tref_words\t") and len(errs) == 6
    assert (logs / "stage_times.tsv").is_file() and (logs / "student_r67_kd_seed1.student.json").is_file()
    # regenerating replaces the section (and keeps the command of the earlier run) and the logs dir
    (logs / "stale.txt").write_text("x")
    (fake_tree / "RESULTS.md").write_text(text + "\n## later section\n")
    (fake_tree / "exp" / "benchmark" / "provenance.json").unlink()
    bm.write_report(fake_tree, fake_tree / "exp", ["dev", "test"], ["dev"], None, env={})
    again = (fake_tree / "RESULTS.md").read_text()
    assert again.count(bm.BEGIN_MARK) == 1 and again.endswith("## later section\n")
    assert "```sh\nlocal/benchmark.sh\n```" in again and not (logs / "stale.txt").exists()
    assert "WARNING: no provenance recorded" in again  # written without the checks: said so


def test_report_before_the_epoch_decoding_has_no_target_and_says_nothing_was_missed(fake_tree):
    """A partial report (students trained, no per-epoch dev WERs yet): no target, so no row is 'not reached'
    and no fastest baseline is named (not "`None`")."""
    shutil.rmtree(fake_tree / "exp" / "benchmark" / "epochs")
    clean_record(fake_tree / "exp")
    bm.write_report(fake_tree, fake_tree / "exp", ["dev", "test"], ["dev"], "local/benchmark.sh", env={},
                    provenance=bm.check_report(fake_tree, fake_tree / "exp", "report", False, state=CLEAN))
    text = (fake_tree / "RESULTS.md").read_text()
    assert "### Ratio 0.667: dev target not available" in text
    rows = [x for x in text.splitlines() if x.startswith("|student_r67_")]
    assert len(rows) == 5 and not any("not reached" in x or "None" in x for x in rows)
    main = next(x for x in rows if x.startswith("|student_r67_encrl [clip+mse]|"))
    assert main.endswith("|(reference point)|-|-|- / -|- / -|")


def test_fastest_baseline_cell_names_each_measure_without_none():
    """The speed-up against the fastest baseline names one baseline, two where the measures differ, and
    '-' for a measure no baseline reached (never "`None`")."""
    from espnet_lw.benchmark.cells import fmt_fastest as _fmt_fastest

    def fast(wall_b, upd_b, wall_x=2.0, upd_x=3.0):
        return {"wall_seconds": {"speedup": wall_x, "baseline": wall_b},
                "updates": {"speedup": upd_x, "baseline": upd_b}}

    assert _fmt_fastest(None) == "-"
    assert _fmt_fastest(fast(None, None, None, None)) == "- / -"
    assert _fmt_fastest(fast("kd", "kd")) == "2.00x / 3.00x (`kd`)"
    assert _fmt_fastest(fast("kd", "control")) == "2.00x / 3.00x (`kd` / `control`)"
    assert _fmt_fastest(fast(None, "kd", None)) == "- / 3.00x (- / `kd`)"


def test_report_names_code_from_another_checkout(fake_tree):
    """The report's numbers come from the espnet_lw that runs: another commit than the recipe's is a warning."""
    clean_record(fake_tree / "exp")
    prov = bm.check_report(fake_tree, fake_tree / "exp", "report", False, state=CLEAN,
                           code_state={"commit": "beef", "clean": True, "dirty": []})
    assert not prov["clean"] and any("code that wrote it is at commit beef" in w for w in prov["warnings"])
    same = bm.check_report(fake_tree, fake_tree / "exp", "report", False, state=CLEAN,
                           code_state={"commit": CLEAN["commit"], "clean": True, "dirty": []})
    assert same["clean"] and same["warnings"] == []
    # another checkout at the same commit with uncommitted code: refused, like the recipe's own tree
    edited = {"commit": CLEAN["commit"], "clean": False, "dirty": [" M espnet_lw/benchmark/compare.py"],
              "root": "/elsewhere"}
    with pytest.raises(UserError, match="another checkout.*uncommitted changes.*compare.py"):
        bm.check_report(fake_tree, fake_tree / "exp", "report", False, state=CLEAN, code_state=edited)
    allowed = bm.check_report(fake_tree, fake_tree / "exp", "report", True, state=CLEAN, code_state=edited)
    assert not allowed["clean"] and any("compare.py" in w for w in allowed["warnings"])
    # the recipe's own checkout (same root): its state already covers the code, outputs allowed
    own = {**edited, "root": "/here"}
    assert bm.check_report(fake_tree, fake_tree / "exp", "report", False, state={**CLEAN, "root": "/here"},
                           code_state=own)["clean"]


def test_report_names_later_invocations_with_other_arguments(fake_tree):
    """A budget run added to a finished matrix (same expdir, same commit, another command) is printed under
    the first command; resuming with the same command is not."""
    clean_record(fake_tree / "exp")
    path = fake_tree / "exp" / "benchmark" / "provenance.json"
    record = json.loads(path.read_text())
    budget = "local/benchmark.sh --budget_epochs '3 8 16'"
    record["runs"] += [dict(record["runs"][0]), dict(record["runs"][0], command=budget)]
    path.write_text(json.dumps(record))
    bm.write_report(fake_tree, fake_tree / "exp", ["dev", "test"], ["dev"], None, env={},
                    provenance=bm.check_report(fake_tree, fake_tree / "exp", "report", False, state=CLEAN))
    text = (fake_tree / "RESULTS.md").read_text()
    assert "(clean tree; 3 invocation(s))" in text
    assert "```sh\nlocal/benchmark.sh\n```\n\nThen, in the same expdir at the same commit" in text
    assert f"```sh\n{budget}\n```" in text and text.count("local/benchmark.sh") == 2


def test_report_keeps_keys_other_tools_own(fake_tree):
    """The device benchmark adds ``device`` to benchmark.json: regenerating the report keeps it (and drops
    the keys of the report's earlier versions)."""
    bm.write_report(fake_tree, fake_tree / "exp", ["test"], ["dev"], "X", env={})
    for path in (fake_tree / "benchmark.json", fake_tree / "exp" / "benchmark" / "benchmark.json"):
        data = json.loads(path.read_text())
        data["device"] = {"rows": [1]}
        data["speedup_to_target"] = {"0.667": 3.55}
        path.write_text(json.dumps(data))
    bm.write_report(fake_tree, fake_tree / "exp", ["test"], ["dev"], "X", env={})
    for path in (fake_tree / "benchmark.json", fake_tree / "exp" / "benchmark" / "benchmark.json"):
        data = json.loads(path.read_text())
        assert data["device"] == {"rows": [1]} and data["command"] == "X" and data["systems"]
        assert "speedup_to_target" not in data


def test_budget_lines_name_the_fewest_encrl_epochs_that_beat_scratch():
    from espnet_lw.benchmark.report import budget_lines

    def row(name, dev, reached=True, kind="encrl"):
        return {"name": name, "kind": kind, "wer": {"dev": {"mean": dev}},
                "cost_to_target": {"reached": reached, "wall_seconds": 600.0}}

    comp = {"target": {"wer": 50.0}, "systems": [
        row("student_r67_scratch", 50.0, kind="scratch"), row("student_r67_encrl", 45.0),
        row("student_r67_paper_e16", 48.0), row("student_r67_paper_e3", 60.0), row("student_r67_paper_e8", 52.0)]}
    lines = budget_lines(comp, "dev")
    assert len([ln for ln in lines if ln]) == 1
    assert "`student_r67_paper`" in lines[1] and "(3: 60.0; 8: 52.0; 16: 48.0)" in lines[1]
    assert "beaten with 16 EncRL epochs (cost to the target, all paid: 10m" in lines[1]
    comp["systems"][2]["wer"]["dev"]["mean"] = 55.0
    assert "**not beaten** within 16 EncRL epochs" in budget_lines(comp, "dev")[1]
    assert budget_lines({"target": {"wer": 50.0}, "systems": [row("student_r67_encrl", 45.0)]}, "dev") == []


def test_replace_section():
    sec = f"{bm.BEGIN_MARK}\nnew\n{bm.END_MARK}\n"
    assert bm.replace_section("", sec) == sec
    assert bm.replace_section("# R\n", sec) == "# R\n\n" + sec
    old = f"# R\n\n{bm.BEGIN_MARK}\nold\n{bm.END_MARK}\n\n## after\n"
    assert bm.replace_section(old, sec) == f"# R\n\n{bm.BEGIN_MARK}\nnew\n{bm.END_MARK}\n\n## after\n"


def test_report_cli(fake_tree):
    """``report`` from the command line, run from the recipe dir (not a git checkout: refused, then marked)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), GIT_CEILING_DIRECTORIES=str(fake_tree.parent))
    cmd = [sys.executable, "-m", "espnet_lw.bin.benchmark", "report", "--recipe_dir", str(fake_tree),
           "--test_sets", "test", "--command", "X"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "refusing to write the report" in proc.stderr
    proc = subprocess.run(cmd + ["--allow_dirty"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((fake_tree / "benchmark.json").read_text())
    assert data["command"] == "X" and data["environment"]["python"]
    assert data["provenance"]["clean"] is False and data["provenance"]["report"]["allow_dirty"] is True
    assert "WARNING: not one clean benchmark run" in (fake_tree / "RESULTS.md").read_text()
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


def dry_run(recipe: Path, *args: str) -> list[str]:
    """The ./run.sh lines that ``benchmark run ARGS`` (with --dry_run among them) prints."""
    proc = subprocess.run([sys.executable, "-m", "espnet_lw.bin.benchmark", "run", "--recipe_dir", str(recipe), *args],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_run_dry_run_plans_every_system(tmp_path):
    """Every mode at every ratio, every seed at --seed_ratios and the first elsewhere, seeds the outer loop;
    every student run has an explicit --student_seed; the ablations take the seeds of their ratio."""
    recipe = fake_recipe(tmp_path)
    cmds = dry_run(recipe, "--ratios", "50 67", "--seeds", "1 2", "--student_args=--max_epoch 2", "--dry_run", "--",
                   "--nbpe", "48")
    assert cmds[0] == ("./run.sh --stage 1 --stop_stage 13 --test_sets 'dev test field_test' --expdir exp "
                       "--dumpdir dump --nbpe 48")
    tags = [c.split("--student_tag ")[1].split()[0] for c in cmds[1:]]
    modes = ["scratch", "pruned", "control", "kd", "encrl"]
    assert tags == ([f"student_r50_{m}_seed1" for m in modes] + [f"student_r67_{m}_seed1" for m in modes]
                    + ["student_r67_encrl_clip_seed1", "student_r67_encrl_mse_seed1", "student_r67_encrl_nokd_seed1"]
                    + [f"student_r67_{m}_seed2" for m in modes]
                    + ["student_r67_encrl_clip_seed2", "student_r67_encrl_mse_seed2", "student_r67_encrl_nokd_seed2"])
    for c, tag in zip(cmds[1:], tags):
        seed = tag.rsplit("_seed", 1)[1]
        assert f"--student_seed {seed} --student_tag {tag}" in c
        assert "--student_args '--max_epoch 2'" in c and c.endswith("--nbpe 48")
    assert "--student_config conf/student_r50.yaml --student_mode kd" in cmds[4]
    assert "--student_config exp/benchmark/conf/student_r67_encrl_nokd.yaml --student_mode encrl" in cmds[-1]
    assert (recipe / "exp/benchmark/conf/student_r67_encrl_clip.yaml").is_file()
    assert not (recipe / "exp/benchmark/provenance.json").exists()  # a dry run records nothing


def test_plan_seed_ratios_and_modes():
    plan = bm.plan(["50", "83"], None, "dev", "", [], {}, "exp", "dump", seeds=[3, 4], seed_ratios=["all"],
                   modes=["scratch", "encrl"])
    tags = [c[c.index("--student_tag") + 1] for c in plan[1:]]
    assert tags == ["student_r50_scratch_seed3", "student_r50_encrl_seed3", "student_r83_scratch_seed3",
                    "student_r83_encrl_seed3", "student_r50_scratch_seed4", "student_r50_encrl_seed4",
                    "student_r83_scratch_seed4", "student_r83_encrl_seed4"]
    assert bm.seeds_for("50", [1, 2, 3], ["67"]) == [1] and bm.seeds_for("67", [1, 2, 3], ["67"]) == [1, 2, 3]
    assert bm.parse_seeds("1 2 2 3") == [1, 2, 3]
    with pytest.raises(UserError, match="not a non-negative integer"):
        bm.parse_seeds("1 x")
    with pytest.raises(UserError, match="unknown"):
        check_modes(["scratch", "distil"])


def test_budget_runs_of_the_papers_setting(tmp_path):
    """--budget_epochs: the paper's config with N EncRL epochs each (fine-tune unchanged), first seed only,
    after that seed's ablations."""
    recipe = fake_recipe(tmp_path)
    cmds = dry_run(recipe, "--ratios", "67", "--seeds", "1 2", "--modes", "scratch encrl", "--budget_epochs", "3 8",
                   "--dry_run")
    tags = [c.split("--student_tag ")[1].split()[0] for c in cmds[1:]]
    assert tags == ["student_r67_scratch_seed1", "student_r67_encrl_seed1", "student_r67_encrl_clip_seed1",
                    "student_r67_encrl_mse_seed1", "student_r67_encrl_nokd_seed1", "student_r67_paper_e3_seed1",
                    "student_r67_paper_e8_seed1", "student_r67_scratch_seed2", "student_r67_encrl_seed2",
                    "student_r67_encrl_clip_seed2", "student_r67_encrl_mse_seed2", "student_r67_encrl_nokd_seed2"]
    paper = yaml.safe_load((REPO / "conf/student_r67_paper.yaml").read_text())
    e8 = yaml.safe_load((recipe / "exp/benchmark/conf/student_r67_paper_e8.yaml").read_text())
    assert e8["encrl"]["max_epoch"] == 8 and {**e8, "encrl": paper["encrl"]} == paper
    assert any("exp/benchmark/conf/student_r67_paper_e8.yaml --student_mode encrl" in c for c in cmds)
    with pytest.raises(UserError, match="EncRL epochs must be a positive integer"):
        bm.derive_encrl_epochs(paper, 0)
    with pytest.raises(UserError, match="--budget_epochs: 'x' is not"):
        benchmark_cli.main(["run", "--recipe_dir", str(recipe), "--budget_epochs", "x", "--dry_run"])


def test_run_refuses_reserved_and_unknown_ratio(tmp_path):
    recipe = fake_recipe(tmp_path)
    with pytest.raises(UserError, match="--test_sets is set by the benchmark"):
        benchmark_cli.main(["run", "--recipe_dir", str(recipe), "--dry_run", "--", "--test_sets", "x"])
    with pytest.raises(UserError, match="--student_seed is set by the benchmark"):
        benchmark_cli.main(["run", "--recipe_dir", str(recipe), "--dry_run", "--", "--student_seed=4"])
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
         "--nbpe", "48", "--allow_dirty", "--asr_args", "--max_epoch 1 --batch_bins 1", "--epoch_test_sets=dev test",
         "--seeds", "4 5", "--seed_ratios=all", "--budget_epochs", "3 8"],
        cwd=recipe, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv[:4] == ["-m", "espnet_lw.bin.benchmark", "run", "--recipe_dir"]
    assert argv[argv.index("--ratios") + 1] == "83"
    assert "--student_args=--max_epoch 1" in argv
    assert argv[argv.index("--epoch_test_sets") + 1] == "dev test"
    assert argv[argv.index("--seeds") + 1] == "4 5" and argv[argv.index("--seed_ratios") + 1] == "all"
    assert argv[argv.index("--modes") + 1] == "scratch pruned control kd encrl"
    assert argv[argv.index("--budget_epochs") + 1] == "3 8"
    assert argv[argv.index("--budget_config") + 1] == "conf/student_r67_paper.yaml"
    assert argv[argv.index("--test_sets") + 1] == "dev test field_test"
    assert "--allow_dirty" in argv[:argv.index("--")]
    assert argv[argv.index("--") + 1:] == ["--nbpe", "48", "--asr_args", "--max_epoch 1 --batch_bins 1"]
    assert argv[argv.index("--command") + 1].startswith("local/benchmark.sh --ratios 83")


SCLITE_SUM = """\
    | SPKR        | # Snt # Wrd | Corr    Sub    Del    Ins    Err  S.Err |
    | Sum/Avg     |  624   4491 | 34.8   56.0    9.2    {err:.1f}   {total:.1f}   99.8 |
"""


def test_encrl_attempts_script(tmp_path):
    """local/encrl_attempts.sh: one stage 11-13 run per attempt config on dev only, then the dev table with the
    seed's control / kd / shipped EncRL students beside the attempts; bad options are refused."""
    (tmp_path / "local").mkdir()
    script = tmp_path / "local" / "encrl_attempts.sh"
    shutil.copy(RECIPE / "local" / "encrl_attempts.sh", script)
    (tmp_path / "conf").mkdir()
    for name in ("student_r67_ftkd.yaml", "student_r67_nbr.yaml", "student_r50_ftkd.yaml"):
        (tmp_path / "conf" / name).write_text("reduction: 0.667\n")
    # a fake run.sh: records its arguments, writes the dev scores of the student it was asked for
    (tmp_path / "run.sh").write_text("""#!/usr/bin/env bash
echo "$@" >> calls.txt
while [ $# -gt 0 ]; do [ "$1" = --student_tag ] && tag="$2"; shift; done
for k in wer cer; do
    d="exp/asr_${tag}/decode_x/dev/score_${k}"; mkdir -p "$d"
    printf '    | Sum/Avg     |  624   4491 | 34.8   56.0    9.2    4.5   %s   99.8 |\\n' "${#tag}.5" > "$d/result.txt"
done
""")
    (tmp_path / "run.sh").chmod(0o755)
    for tag, total in (("student_r67_kd_seed2", 69.8), ("student_r50_encrl_seed2", 66.0)):
        kd = tmp_path / "exp" / f"asr_{tag}" / "decode_x" / "dev" / "score_wer"
        kd.mkdir(parents=True)
        (kd / "result.txt").write_text(SCLITE_SUM.format(err=4.5, total=total))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    configs = "conf/student_r67_ftkd.yaml conf/student_r67_nbr.yaml conf/student_r50_ftkd.yaml"
    out = subprocess.run(["bash", str(script), "--seed", "2", "--configs", configs, "--", "--nj", "1"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert calls[:2] == [f"--stage 11 --stop_stage 13 --test_sets dev --student_config conf/student_r67_{n}.yaml "
                     f"--student_mode encrl --student_seed 2 --student_tag student_r67_{n}_encrl_seed2 --nj 1"
                     for n in ("ftkd", "nbr")]
    assert calls[2].split()[7] == "conf/student_r50_ftkd.yaml" and len(calls) == 3
    table = out.stdout.splitlines()
    assert table[0].split() == ["system", "dev", "WER", "dev", "CER"]
    assert table[1].split()[:2] == ["student_r67_kd_seed2", "69.8"] and table[1].split()[2] == "nan"
    assert table[2].split() == ["student_r67_ftkd_encrl_seed2", "28.5", "28.5"]
    assert table[3].split()[0] == "student_r67_nbr_encrl_seed2"
    # each attempt beside its own ratio's baselines
    assert [t.split()[0] for t in table[4:]] == ["student_r50_encrl_seed2", "student_r50_ftkd_encrl_seed2"]
    for bad, msg in ((["--seed", "x"], "--seed must be a whole number"),
                     (["--configs", "conf/nope.yaml"], "conf/nope.yaml: no such student config"),
                     (["--frobnicate"], "unexpected argument")):
        r = subprocess.run(["bash", str(script), *bad], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert r.returncode != 0 and msg in r.stderr, (bad, r.stderr)
    h = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True)
    assert h.returncode == 0 and "dev only" in h.stdout


# ------------------------------------------------------------------ time to target on the validation CER
def test_parse_valid_cer_missing_and_nan(tmp_path):
    """An EncRL step logs no cer_ctc and a diverged epoch logs nan: both are 'unknown', not 0."""
    log = write_log(tmp_path / "train.log", [("1 second", "1 second")] * 3, cers=["0.264", "", "nan"])
    times = bm.parse_epoch_times(log)
    assert [t.valid_cer for t in times.values()] == [26.4, None, None]
    from espnet_lw.benchmark.timing import valid_cer_list

    assert valid_cer_list({1: times[1], 3: times[3]}) == [26.4, None, None]  # epoch 2 missing from the log


def set_cers(exp: Path, secs: int, cers: list[str]) -> None:
    """Rewrite a fake system's train.log with these valid CERs (train ``secs`` + 10 s valid per epoch)."""
    write_log(exp / "train.log", [(f"{secs} seconds", "10 seconds")] * len(cers), cers=cers)


@pytest.fixture
def cer_tree(fake_tree):
    """fake_tree with valid CERs: scratch (mean of seeds 85, 39, 43, 40) reaches its own last-epoch CER (40)
    at epoch 2; EncRL at its first fine-tune epoch; KD at its second; pruned never."""
    exp = fake_tree / "exp"
    set_cers(exp / "asr_student_r67_scratch_seed1", 50, ["0.80", "0.38", "0.45", "0.42"])
    set_cers(exp / "asr_student_r67_scratch_seed2", 50, ["0.90", "0.40", "0.41", "0.38"])
    set_cers(exp / "asr_student_r67_encrl_seed1", 50, ["0.39", "0.30"])
    write_log(exp / "asr_student_r67_encrl_seed1" / "encrl" / "train.log", [("30 seconds", "10 seconds")] * 2,
              cers=["", ""])
    set_cers(exp / "asr_student_r67_kd_seed1", 50, ["0.45", "0.39"])
    set_cers(exp / "asr_student_r67_pruned_seed1", 50, ["0.50", "0.45"])
    return fake_tree


def check_valid_cer_comparison(comp: dict) -> None:
    c67 = comp["0.667"]
    assert c67["target"]["set"] == "valid_cer" and c67["target"]["metric"] == "cer"
    assert c67["target"]["wer"] == 40.0 and c67["target"]["epoch"] == 4
    assert "validation CER (dev)" in c67["target"]["how"]
    rows = {r["name"]: r for r in c67["systems"]}
    sc = rows["student_r67_scratch"]["cost_to_target"]
    assert sc["epoch"] == 2 and sc["wall_seconds"] == 120.0 and sc["updates"] == 200  # not its 4 epochs
    assert rows["student_r67_scratch"]["final_valid_cer"] == 40.0
    ec = rows["student_r67_encrl"]["cost_to_target"]
    assert ec["epoch"] == 1 and ec["wall_seconds"] == 40.0 + 80.0 + 60.0 and ec["updates"] == 300
    kd = rows["student_r67_kd"]["cost_to_target"]
    assert kd["epoch"] == 2 and kd["wall_seconds"] == 40.0 + 120.0
    assert rows["student_r67_pruned"]["cost_to_target"]["reached"] is False
    fast = rows["student_r67_encrl"]["speedup_vs_fastest_baseline"]
    assert fast["wall_seconds"] == {"baseline": "student_r67_scratch", "speedup": round(120 / 180, 3)}


def test_report_has_the_valid_cer_comparison(cer_tree):
    bench = bm.write_report(cer_tree, cer_tree / "exp", ["dev", "test"], ["dev"], "local/benchmark.sh", env={})
    by = {s["name"]: s for s in bench["systems"]}
    assert by["student_r67_encrl_seed1"]["valid_cer_per_epoch"] == [39.0, 30.0]
    check_valid_cer_comparison(bench["comparison_valid_cer"])
    text = (cer_tree / "RESULTS.md").read_text()
    assert "### Time to target on the trainer's validation CER (dev, every epoch)" in text
    row = next(x for x in text.splitlines() if x.startswith("|0.667|`student_r67_encrl`|"))
    # fastest baseline per measure: scratch by wall (120 s); by updates scratch and KD tie (200), KD by name
    assert row == "|0.667|`student_r67_encrl`|encrl|30.0 %|epoch 1/2|3m00s|300|0.67x / 0.67x|0.67x / 0.67x " \
                  "(`student_r67_scratch` / `student_r67_kd`)|"
    srow = next(x for x in text.splitlines() if x.startswith("|0.667|`student_r67_scratch`|"))
    assert "|epoch 2/4 (target 40.0 %)|2m00s|200|1.00x / 1.00x|-|" in srow
    assert "not reached" in next(x for x in text.splitlines() if x.startswith("|0.667|`student_r67_pruned`|"))
    assert ("Ratio 0.667, `student_r67_encrl` against the bars (>= 3x vs scratch, >= 1.5x vs the fastest "
            "baseline) on this target: wall 0.67x / 0.67x: **not met**; updates 0.67x / 0.67x: **not met**.") in text


def test_from_logs_recomputes_it_from_a_committed_report(cer_tree, capsys):
    """Without the exp dir, from benchmark.json and logs/benchmark/ alone: the same comparison; a run whose
    log is missing or short is refused by name."""
    bench = bm.write_report(cer_tree, cer_tree / "exp", ["dev", "test"], ["dev"], "local/benchmark.sh", env={})
    shutil.rmtree(cer_tree / "exp")
    from espnet_lw.benchmark.valid_cer import from_logs

    logs = cer_tree / "logs" / "benchmark"
    res = from_logs(cer_tree / "benchmark.json", logs)
    assert res["comparison_valid_cer"] == json.loads(json.dumps(bench["comparison_valid_cer"]))
    check_valid_cer_comparison(res["comparison_valid_cer"])
    out_json, plot = cer_tree / "vc.json", cer_tree / "vc.png"
    benchmark_cli.main(["from_logs", "--benchmark_json", str(cer_tree / "benchmark.json"), "--logs", str(logs),
                        "--json", str(out_json), "--plot", str(plot)])
    printed = capsys.readouterr().out
    assert "|0.667|`student_r67_encrl`|encrl|30.0 %|epoch 1/2|3m00s|300|" in printed
    assert "benchmark command `local/benchmark.sh`" in printed
    assert json.loads(out_json.read_text())["comparison_valid_cer"] == res["comparison_valid_cer"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    short = logs / "student_r67_kd_seed1.train.log"
    short.write_text(short.read_text().splitlines()[0] + "\n")
    with pytest.raises(UserError, match="1 epochs logged, benchmark.json counts 2 for student_r67_kd_seed1"):
        from_logs(cer_tree / "benchmark.json", logs)
    short.unlink()
    with pytest.raises(UserError, match="no epoch lines for student_r67_kd_seed1"):
        from_logs(cer_tree / "benchmark.json", logs)
