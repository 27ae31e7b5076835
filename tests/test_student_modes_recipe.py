"""Every student mode through the stage driver (lw.sh stage 11 -> 12, the kd student to 14-15) on the
tiny mini_synth corpus, with the shipped conf/student_r67.yaml (its EncRL loss: frame CLIP at 0.1 +
encoder MSE from every_other blocks) and one epoch per training (``--student_args "--max_epoch 1"``).

One module-scoped reference (stages 1-11, 2 blocks) serves every student; a student has 1 block.
Slow (a few minutes): marked ``slow``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from recipe_runs import recipe_copy
from recipe_runs import run as run_script

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2" / "mini_synth" / "lw1"
TINY_ARGS = [
    "--local_data_opts", "--size tiny", "--test_sets", "test",
    "--token_type", "bpe", "--nbpe", "48",
    "--asr_args", "--max_epoch 1 --batch_bins 300000 --encoder_conf num_blocks=2",
]
STUDENT = "conf/student_r67.yaml"
REF_TAG = "reference_mini_raw_bpe48"

pytestmark = pytest.mark.slow


def run(recipe: Path, *args: str, check=True) -> subprocess.CompletedProcess:
    proc = run_script(["./run.sh", *args], recipe, timeout=1500)
    if check and proc.returncode != 0:
        raise AssertionError(f"run.sh {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def run_student(recipe: Path, mode: str, *extra: str, stop: int = 12) -> subprocess.CompletedProcess:
    return run(recipe, "--stage", "11", "--stop_stage", str(stop), "--student_config", STUDENT,
               "--student_mode", mode, "--student_args", "--max_epoch 1", *extra, *TINY_ARGS)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """A tiny mini_synth recipe with a trained 2-block reference (stages 1-11)."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("needs espeak-ng and sox (egs2/TEMPLATE/lw1/install.sh)")
    d = recipe_copy(RECIPE, tmp_path_factory.mktemp("modes") / "lw1")
    run(d, "--stage", "1", "--stop_stage", "11", *TINY_ARGS)
    return d


def check_decoded(recipe: Path, exp: Path) -> None:
    assert (exp / ".done.stage11").is_file() and (exp / "valid.loss.ave.pth").is_file()
    hyp = next(exp.glob("decode_*")) / "test" / "text"
    ref = (recipe / "dump/raw/test/text").read_text().splitlines()
    assert [h.split()[0] for h in hyp.read_text().splitlines()] == [r.split()[0] for r in ref]


def test_shipped_encrl_student_end_to_end(recipe):
    """The shipped loss (frame CLIP 0.1 + encoder MSE, every_other init) trains through stage 11 and decodes."""
    run_student(recipe, "encrl")
    exp = recipe / "exp" / "asr_student_r67_encrl"
    shipped = yaml.safe_load((REPO / STUDENT).read_text())["encrl"]["model_conf"]
    enc_conf = yaml.safe_load((exp / "encrl" / "config.yaml").read_text())
    assert enc_conf["model"] == "lw_encrl" and enc_conf["encoder_conf"]["num_blocks"] == 1
    assert enc_conf["model_conf"]["alignment"] == shipped["alignment"]
    assert enc_conf["model_conf"]["init_from_reference"] == "every_other"
    log = (exp / "encrl" / "train.log").read_text()
    assert "loss_clip=" in log and "loss_mse=" in log and "1epoch results" in log
    # the cache: both targets from one pass, with the hash of the data it was made from
    targets = recipe / "exp" / f"asr_{REF_TAG}" / "targets" / "train"
    info = yaml.safe_load((targets / "info.yaml").read_text())
    assert info["what"] == ["enc", "logp"] and set(info["data"]["files"]) >= {"wav.scp", "text"}
    assert (targets / "ref_logp.scp").is_file()
    ident = json.loads((exp / "conf" / "student.json").read_text())
    assert ident["mode"] == "encrl" and ident["init"] == "every_other" and ident["ratio"] == 0.667
    check_decoded(recipe, exp)


def test_baseline_modes_train_one_epoch_and_decode(recipe):
    ref = recipe / "exp" / f"asr_{REF_TAG}"
    ref_state = torch.load(ref / "valid.loss.ave.pth", map_location="cpu")
    key = "encoder.encoders.0.feed_forward.w_1.weight"
    # (pruned `last` trains and decodes in test_recipe_mini_synth.py too; here it is the shipped config's)
    for mode in ("pruned", "control"):
        run_student(recipe, mode)
        exp = recipe / "exp" / f"asr_student_r67_{mode}"
        check_decoded(recipe, exp)
        ident = json.loads((exp / "conf" / "student.json").read_text())
        assert ident["mode"] == mode and ident["epochs"] == 8
        # pruned keeps the last block; the control starts from the EncRL student's blocks (every_other of 2 -> 1)
        init = torch.load(exp / "conf" / "init.pth", map_location="cpu")
        assert torch.equal(init[key], ref_state["encoder.encoders.1.feed_forward.w_1.weight"])
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
    import zipfile

    with zipfile.ZipFile(exp / "packed" / "model.zip") as z:
        cfg_name = next(n for n in z.namelist() if n.endswith("config.yaml"))
        packed = yaml.safe_load(z.read(cfg_name))
    assert packed["model"] == "espnet" and "kd" not in packed["model_conf"]
    assert json.loads((exp / "onnx" / "parity.json").read_text())["ok"] is True
