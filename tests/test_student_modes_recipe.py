"""Every student mode through the stage driver (lw.sh stage 11 -> 13, the encrl and kd students on to
14-15 and `transcribe`) on a copy of the session's tiny mini_synth run (conftest.py's ``tiny_mini_synth``:
a 2-block reference), with the shipped conf/student_r67.yaml (its EncRL loss: frame CLIP at 0.1 + encoder
MSE from every_other blocks; a student has 1 block) and one epoch per training
(``--student_args "--max_epoch 1"``); then a student's overwrite and a changed student config.
Slow (a few minutes): marked ``slow``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from recipe_runs import MINI_REF_TAG as REF_TAG
from recipe_runs import MINI_TINY_ARGS, clone_recipe_run
from recipe_runs import run_sh as run

REPO = Path(__file__).resolve().parents[1]
TINY_ARGS = ["--test_sets", "test", *MINI_TINY_ARGS]
STUDENT = "conf/student_r67.yaml"
KEY = "encoder.encoders.0.feed_forward.w_1.weight"

pytestmark = pytest.mark.slow


def run_student(recipe: Path, mode: str, *extra: str, stop: int = 12, config: str = STUDENT,
                check=True) -> subprocess.CompletedProcess:
    return run(recipe, "--stage", "11", "--stop_stage", str(stop), "--student_config", config,
               "--student_mode", mode, "--student_args", "--max_epoch 1", *extra, *TINY_ARGS, check=check)


@pytest.fixture(scope="module")
def recipe(tiny_mini_synth, tmp_path_factory):
    """A copy of the session's tiny mini_synth run (stages 1-13: a trained 2-block reference)."""
    return clone_recipe_run(tiny_mini_synth.dir, tmp_path_factory.mktemp("modes") / "lw1")


def check_decoded(recipe: Path, exp: Path) -> None:
    assert (exp / ".done.stage11").is_file() and (exp / "valid.loss.ave.pth").is_file()
    hyp = next(exp.glob("decode_*")) / "test" / "text"
    ref = (recipe / "dump/raw/test/text").read_text().splitlines()
    assert [h.split()[0] for h in hyp.read_text().splitlines()] == [r.split()[0] for r in ref]


def test_shipped_encrl_student_end_to_end(recipe):
    """The shipped loss (frame CLIP 0.1 + encoder MSE, every_other init) trains through stage 11, decodes and
    is scored into RESULTS.md; the EncRL checkpoint holds the student only."""
    run_student(recipe, "encrl", stop=13)
    exp = recipe / "exp" / "asr_student_r67_encrl"
    ref = recipe / "exp" / f"asr_{REF_TAG}"
    ref_conf = yaml.safe_load((ref / "config.yaml").read_text())
    assert ref_conf["encoder_conf"]["num_blocks"] == 2 and ref_conf["encoder_conf"]["output_size"] == 144
    shipped = yaml.safe_load((REPO / STUDENT).read_text())["encrl"]["model_conf"]
    enc_conf = yaml.safe_load((exp / "encrl" / "config.yaml").read_text())
    assert enc_conf["model"] == "lw_encrl" and enc_conf["encoder_conf"]["num_blocks"] == 1
    assert enc_conf["model_conf"]["alignment"] == shipped["alignment"]
    assert enc_conf["model_conf"]["init_from_reference"] == "every_other"
    # EncRL reads the reference's outputs from the cache (lw.sh hands it to the loader as encrl.yaml says)
    assert Path(enc_conf["model_conf"]["reference_cache"]).parts[-3:] == (ref.name, "targets", "train")
    assert any(",ref_enc," in ",".join(map(str, p)) for p in enc_conf["train_data_path_and_name_and_type"])
    log = (exp / "encrl" / "train.log").read_text()
    assert "loss_clip=" in log and "loss_mse=" in log and "1epoch results" in log
    # EncRL checkpoints hold the student only: one block, no reference weights
    state = torch.load(exp / "encrl" / "valid.loss.ave.pth", map_location="cpu")
    assert any(k.startswith("encoder.encoders.0.") for k in state)
    assert not any(k.startswith("encoder.encoders.1.") for k in state)
    # the cache: both targets from one pass, with the hash of the data it was made from, for every student
    targets = ref / "targets" / "train"
    info = yaml.safe_load((targets / "info.yaml").read_text())
    assert info["what"] == ["enc", "logp"] and set(info["data"]["files"]) >= {"wav.scp", "text"}
    assert (targets / "ref_enc.scp").is_file() and (targets / "ref_logp.scp").is_file()
    ident = json.loads((exp / "conf" / "student.json").read_text())
    assert ident["mode"] == "encrl" and ident["init"] == "every_other" and ident["ratio"] == 0.667
    ft_conf = yaml.safe_load((exp / "config.yaml").read_text())
    assert ft_conf["model"] == "lw_ctc" and ft_conf["decoder"] is None
    assert any("encrl/valid.loss.ave.pth" in p for p in ft_conf["init_param"])
    assert int((exp / "params.txt").read_text().split()[0]) < int((ref / "params.txt").read_text().split()[0])
    check_decoded(recipe, exp)
    assert "Sum/Avg" in (next(exp.glob("decode_*")) / "test" / "score_wer" / "result.txt").read_text()
    assert "asr_student_r67_encrl" in (recipe / "RESULTS.md").read_text()


def test_pack_export_and_transcribe_a_student(recipe):
    """Stages 14-15 take the trained student to a zip and an ONNX model; ``transcribe`` reads the latter."""
    exp = recipe / "exp" / "asr_student_r67_encrl"
    if not (exp / "valid.loss.ave.pth").is_file():
        run_student(recipe, "encrl")
    stages_14_15 = ["--stage", "14", "--stop_stage", "15", "--student_config", STUDENT, *TINY_ARGS]
    proc = run(recipe, *stages_14_15, "--export_parity_n", "5")
    assert "Successfully finished stages 14-15" in proc.stderr
    with zipfile.ZipFile(exp / "packed" / "model.zip") as z:
        names = z.namelist()
    assert any(n.endswith("config.yaml") for n in names) and any(n.endswith(".pth") for n in names)
    onnx = exp / "onnx"
    for f in ("model.onnx", "model.int8.onnx", "tokens.txt", "meta.json", "parity.json"):
        assert (onnx / f).is_file(), f
    assert json.loads((onnx / "parity.json").read_text())["ok"] is True
    wav = (recipe / "dump/raw/test/wav.scp").read_text().splitlines()[0].split(maxsplit=1)[1]
    out = subprocess.run([sys.executable, "-m", "espnet_lw.bin.transcribe", str(onnx), str(recipe / wav)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1 and lines[0].split()[0] == Path(wav).stem
    # a re-run with the same options finds both stages done; with other export options it stops, naming them
    again = run(recipe, *stages_14_15, "--export_parity_n", "5")
    assert "already packed: skipped" in again.stderr and "already exported: skipped" in again.stderr
    other = run(recipe, "--stage", "15", "--stop_stage", "15", "--student_config", STUDENT, *TINY_ARGS,
                check=False)
    assert other.returncode != 0 and "export_parity_n: 5 -> 100" in other.stderr


def test_baseline_modes_train_one_epoch_and_decode(recipe):
    ref_state = torch.load(recipe / "exp" / f"asr_{REF_TAG}" / "valid.loss.ave.pth", map_location="cpu")
    for mode in ("scratch", "pruned", "control"):
        run_student(recipe, mode)
        exp = recipe / "exp" / f"asr_student_r67_{mode}"
        check_decoded(recipe, exp)
        ident = json.loads((exp / "conf" / "student.json").read_text())
        assert ident["mode"] == mode and ident["epochs"] == 8  # every baseline: the EncRL student's epochs
    # pruned keeps the last block; the control starts from the EncRL student's blocks (every_other of 2 -> 1)
    for mode in ("pruned", "control"):
        init = torch.load(recipe / "exp" / f"asr_student_r67_{mode}" / "conf" / "init.pth", map_location="cpu")
        assert torch.equal(init[KEY], ref_state["encoder.encoders.1.feed_forward.w_1.weight"])
    # scratch: random weights, the reference's warm-up
    scratch = yaml.safe_load((recipe / "exp/asr_student_r67_scratch/config.yaml").read_text())
    assert not scratch.get("init_param") and scratch["scheduler_conf"]["warmup_steps"] == 300
    control = yaml.safe_load((recipe / "exp/asr_student_r67_control/config.yaml").read_text())
    finetune = yaml.safe_load((REPO / STUDENT).read_text())["finetune"]
    assert control["scheduler_conf"] == finetune["scheduler_conf"] and control["model_conf"] == {}
    assert any("conf/init.pth" in p for p in control["init_param"])


def test_kd_student_trains_decodes_packs_and_exports(recipe):
    proc = run_student(recipe, "kd", "--student_seed", "3", "--export_parity_n", "3", stop=15)
    exp = recipe / "exp" / "asr_student_r67_kd_seed3"  # the seed is in the default tag
    check_decoded(recipe, exp)
    conf = yaml.safe_load((exp / "config.yaml").read_text())
    assert conf["model"] == "lw_ctc" and conf["model_conf"]["kd"] == {"weight": 1.0, "temperature": 2.0}
    assert conf["seed"] == 3
    train_data = [",".join(map(str, p)) for p in conf["train_data_path_and_name_and_type"]]
    assert any(p.endswith("ref_logp.scp,ref_logp,kaldi_ark") for p in train_data)
    assert "loss_kd=" in (exp / "train.log").read_text()
    ident = json.loads((exp / "conf" / "student.json").read_text())
    assert ident["mode"] == "kd" and ident["seed"] == 3 and ident["kd"] == {"weight": 1.0, "temperature": 2.0}
    assert "reference targets" in proc.stderr
    # stages 14-15: the kd student is packed and exported as the stock CTC model
    with zipfile.ZipFile(exp / "packed" / "model.zip") as z:
        cfg_name = next(n for n in z.namelist() if n.endswith("config.yaml"))
        packed = yaml.safe_load(z.read(cfg_name))
    assert packed["model"] == "espnet" and "kd" not in packed["model_conf"]
    assert json.loads((exp / "onnx" / "parity.json").read_text())["ok"] is True


def test_encrl_student_with_kd_in_its_fine_tune(recipe, tmp_path):
    """finetune.kd: the fine-tune reads the reference's posteriors from the cache and logs its KD term."""
    conf = yaml.safe_load((REPO / STUDENT).read_text())
    conf["finetune"]["kd"] = {"weight": 0.5, "temperature": 2.0}
    student = tmp_path / "student_r67_ftkd.yaml"
    student.write_text(yaml.safe_dump(conf))
    run_student(recipe, "encrl", config=str(student))
    exp = recipe / "exp" / "asr_student_r67_ftkd_encrl"
    check_decoded(recipe, exp)
    ft = yaml.safe_load((exp / "config.yaml").read_text())
    assert ft["model_conf"]["kd"] == {"weight": 0.5, "temperature": 2.0}
    assert any(",ref_logp," in ",".join(map(str, p)) for p in ft["train_data_path_and_name_and_type"])
    assert "loss_kd=" in (exp / "train.log").read_text() and "loss_kd=" not in (exp / "encrl/train.log").read_text()


def test_overwrite_of_a_student_keeps_its_reference(recipe):
    run_student(recipe, "scratch")  # skipped when a test above made it
    ref_model = recipe / "exp" / f"asr_{REF_TAG}" / "valid.loss.ave.pth"
    ref_stamp = ref_model.stat().st_mtime_ns
    student = recipe / "exp" / "asr_student_r67_scratch"
    old_model = (student / "valid.loss.ave.pth").read_bytes()
    proc = run_student(recipe, "scratch", "--overwrite", "true", stop=11)
    assert "using the trained reference" in proc.stderr
    assert ref_model.stat().st_mtime_ns == ref_stamp  # the reference was not retrained
    assert not list(ref_model.parent.parent.glob("asr_reference_*.old.*"))
    kept = sorted(student.parent.glob("asr_student_r67_scratch.old.*"))
    assert kept and (kept[-1] / "valid.loss.ave.pth").read_bytes() == old_model
    assert (student / ".done.stage11").is_file()  # and the student was trained again


def test_changed_config_of_a_trained_student_stops_stage_11(recipe, tmp_path):
    run_student(recipe, "scratch")  # skipped when a test above made it
    student = recipe / "exp" / "asr_student_r67_scratch"
    conf = yaml.safe_load((REPO / STUDENT).read_text())
    conf["scratch"]["scheduler_conf"] = {"warmup_steps": 299}
    changed = tmp_path / "student_r67.yaml"  # same name, so the same --student_tag
    changed.write_text(yaml.safe_dump(conf))
    before = (student / "conf" / "scratch.yaml").read_text()
    proc = run_student(recipe, "scratch", stop=11, config=str(changed), check=False)
    assert proc.returncode != 0
    assert "scratch.yaml" in proc.stderr and "--overwrite true" in proc.stderr
    assert (student / "conf" / "scratch.yaml").read_text() == before
    assert (student / ".done.stage11").is_file()
