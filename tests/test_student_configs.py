"""make_student_configs: students derived from the reference's own config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from espnet_lw.bin.make_student_configs import main
from espnet_lw.models.student_config import make_configs, student_blocks
from espnet_lw.utils.cli import UserError

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("ref_blocks,reduction,expected", [
    (12, 0.5, 6), (12, 0.667, 4), (12, 0.833, 2), (6, 0.5, 3), (6, 0.667, 2), (6, 0.833, 1),
])
def test_reduction_ratios(ref_blocks, reduction, expected):
    assert student_blocks(ref_blocks, reduction) == expected


def test_reduction_leaving_no_block_is_refused():
    with pytest.raises(UserError, match="at least one block"):
        student_blocks(2, 0.833)


@pytest.mark.parametrize("ratio", ["50", "67", "83"])
def test_shipped_student_configs(mini_reference_config, tmp_path, ratio, monkeypatch):
    from espnet_lw.models import student_config

    monkeypatch.setattr(student_config, "check_reference_cache", lambda *a: None)  # "cache": no real one here
    ref_path, ref = mini_reference_config
    files = make_configs(ref_path, tmp_path / "ref.pth", REPO / "conf" / f"student_r{ratio}.yaml", "encrl", "cache")
    encrl, ft = files["encrl.yaml"], files["finetune.yaml"]
    blocks = student_blocks(ref["encoder_conf"]["num_blocks"], {"50": 0.5, "67": 0.667, "83": 0.833}[ratio])
    for conf in (encrl, ft):
        assert conf["encoder_conf"]["num_blocks"] == blocks
        assert conf["encoder_conf"]["output_size"] == ref["encoder_conf"]["output_size"]
        assert conf["frontend_conf"] == {k: v for k, v in ref["frontend_conf"].items() if k != "fs"}
        assert "token_list" not in conf and "normalize" not in conf
    assert encrl["model"] == "lw_encrl" and ft["model"] == "lw_ctc"
    assert encrl["model_conf"]["reference_model"] == str(tmp_path / "ref.pth")
    assert encrl["model_conf"]["reference_cache"] == "cache"
    assert set(encrl["model_conf"]["alignment"]) == {"clip", "mse"}
    scratch = make_configs(ref_path, tmp_path / "ref.pth", REPO / "conf" / f"student_r{ratio}.yaml", "scratch", None)
    # the scratch baseline trains as many epochs as EncRL + fine-tune together
    assert scratch["scratch.yaml"]["max_epoch"] == encrl["max_epoch"] + ft["max_epoch"]
    # and so does the pruned baseline (no EncRL step: all its epochs are CTC), with the fine-tune's schedule
    # (scratch keeps the reference's: random weights need its warm-up)
    pruned = make_configs(ref_path, tmp_path / "ref.pth", REPO / "conf" / f"student_r{ratio}.yaml", "pruned", None)
    assert pruned["finetune.yaml"]["max_epoch"] == scratch["scratch.yaml"]["max_epoch"]
    assert pruned["finetune.yaml"]["scheduler_conf"] == ft["scheduler_conf"]
    assert scratch["scratch.yaml"]["scheduler_conf"] == ref["scheduler_conf"]


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "conf").glob("student_*.yaml")))
def test_every_shipped_student_config_makes_its_encrl_student(mini_reference_config, tmp_path, name, monkeypatch):
    """Every conf/student_*.yaml (the shipped ones, the paper's setting, the documented attempts) makes an
    EncRL + fine-tune pair; the attempts differ from conf/student_r67.yaml in what their names say."""
    from espnet_lw.models import student_config

    checked = []  # a fine-tune with KD checks that the cache holds the reference's posteriors
    monkeypatch.setattr(student_config, "check_reference_cache", lambda cache, *a: checked.append((cache, a[-1])))
    ref_path, _ = mini_reference_config
    files = make_configs(ref_path, tmp_path / "ref.pth", REPO / "conf" / name, "encrl", "cache")
    encrl, ft = files["encrl.yaml"], files["finetune.yaml"]
    assert encrl["model"] == "lw_encrl" and ft["model"] == "lw_ctc"
    clip = encrl["model_conf"]["alignment"]["clip"]
    shipped = name in ("student_r50.yaml", "student_r67.yaml", "student_r83.yaml")  # their fine-tune has KD
    kd = {"weight": 1.0, "temperature": 2.0} if shipped else None
    assert (ft.get("model_conf") or {}).get("kd") == kd and checked == ([("cache", ["logp"])] if kd else [])
    assert clip.get("exclude_neighbours") == (3 if "nbr" in name else None)
    assert encrl["model_conf"]["alignment"].get("layers") == ({"weight": 1.0} if "layers" in name else None)
    # the intermediate-block term runs the reference on the fly: its EncRL step is not handed the cache
    # (lw.sh gives the data loader the cached outputs only when encrl.yaml names it)
    assert encrl["model_conf"].get("reference_cache") == (None if "layers" in name else "cache")
    if name.startswith("student_r67_"):
        r67 = make_configs(ref_path, tmp_path / "ref.pth", REPO / "conf" / "student_r67.yaml", "encrl", "cache")
        assert encrl["max_epoch"] == (3 if "encrl3" in name else r67["encrl.yaml"]["max_epoch"]) or "paper" in name
        assert ft["max_epoch"] == r67["finetune.yaml"]["max_epoch"] or "paper" in name


def test_unknown_key_is_named(mini_reference_config, tmp_path):
    ref_path, _ = mini_reference_config
    bad = tmp_path / "student.yaml"
    bad.write_text("reduction: 0.5\nencrl: {max_epochs: 3}\n")
    with pytest.raises(UserError, match="max_epochs") as e:
        make_configs(ref_path, tmp_path / "ref.pth", bad, "encrl", None)
    assert str(bad) in str(e.value)


def test_changed_config_of_a_trained_student_is_refused(mini_reference_config, tmp_path):
    ref_path, _ = mini_reference_config
    student = tmp_path / "student.yaml"
    shipped = yaml.safe_load((REPO / "conf" / "student_r67.yaml").read_text())
    del shipped["finetune"]["kd"]  # EncRL alone: no target cache needed here
    student.write_text(yaml.safe_dump(shipped))
    exp = tmp_path / "exp" / "asr_student"
    args = ["--reference_config", str(ref_path), "--reference_model", str(tmp_path / "ref.pth"),
            "--student_config", str(student), "--out_dir", str(exp / "conf"), "--trained_dir", str(exp)]
    main(args)  # nothing trained yet: written
    (exp / "encrl").mkdir()
    (exp / "encrl" / ".done.stage11").touch()
    before = (exp / "conf" / "finetune.yaml").read_text()
    main(args)  # same config again (a resumed run): accepted
    conf = yaml.safe_load(student.read_text())
    conf["finetune"]["max_epoch"] += 1
    student.write_text(yaml.safe_dump(conf))
    with pytest.raises(UserError, match="finetune.yaml") as e:
        main(args)
    assert "--overwrite true" in str(e.value)
    assert (exp / "conf" / "finetune.yaml").read_text() == before  # the trained student's config is kept


@pytest.mark.parametrize("text,match", [
    ("reduction: 0.5\nencrl: {model_conf: {alignment: {mse: {targt: encoder}}}}\n", r"unknown keys \['targt'\]"),
    ("reduction: 0.5\npruned: {blocks: some}\n", "blocks must be first, last, every_other"),
    ("reduction: 0.5\nencrl: {model_conf: {init_from_reference: [a]}}\n", "init_from_reference"),
    ("reduction: 0.5\nscratch: [1]\n", "section 'scratch' must be a mapping"),
    ("reduction: 0.5\nnum_blocks: 2\n", "exactly one of num_blocks and reduction"),
    ("num_blocks: 99\n", "between 1 and the reference's"),
    ("reduction: 1.5\n", "fraction between 0 and 1"),
    # the baselines' sections (kd, control) and the fine-tune's kd term
    ("reduction: 0.5\nkd: {weight: 1.0, temprature: 2}\n", r"unknown keys \['temprature'\]"),
    ("reduction: 0.5\nkd: {weight: -1}\n", "kd.weight must be > 0"),
    ("reduction: 0.5\nkd: {model_conf: {kd: {weight: 1}}}\n", "directly under kd"),
    ("reduction: 0.5\ncontrol: {weight: 1.0}\n", r"section 'control': unknown keys \['weight'\]"),
    ("reduction: 0.5\ncontrol: {blocks: middle}\n", "blocks must be first, last"),
    ("reduction: 0.5\nfinetune: {model_conf: {kd: {weight: 1}}}\n", r"give finetune.kd: \{weight, temperature\}"),
    ("reduction: 0.5\nfinetune: {kd: {weight: 0}}\n", "finetune.kd.weight must be > 0"),
    ("reduction: 0.5\ncontrol: {kd: {weight: 1}}\n", r"section 'control': unknown keys \['kd'\]"),
])
def test_bad_student_configs_are_refused_with_the_file(mini_reference_config, tmp_path, text, match):
    ref_path, _ = mini_reference_config
    bad = tmp_path / "student.yaml"
    bad.write_text(text)
    with pytest.raises(UserError, match=match) as e:
        make_configs(ref_path, tmp_path / "ref.pth", bad, "encrl", None)
    assert str(bad) in str(e.value)


def test_student_config_schema(tmp_path):
    from espnet_lw.models.student_config import SECTIONS, StudentConfig

    conf = StudentConfig.load(REPO / "conf" / "student_r67.yaml")
    assert conf.reduction == 0.667 and conf.num_blocks is None and conf.blocks_for(12) == 4
    assert set(conf.sections) == set(SECTIONS)
    assert conf.sections["pruned"].blocks == "last" and conf.sections["encrl"].overrides["max_epoch"] == 1
    assert conf.sections["encrl"].model_conf["alignment"]["mse"] == {"weight": 1.0, "target": "encoder"}
    explicit = StudentConfig.from_dict({"num_blocks": 3, "pruned": {"blocks": "0, 4,8"}}, tmp_path / "s.yaml")
    assert explicit.blocks_for(12) == 3 and explicit.sections["pruned"].blocks == [0, 4, 8]
    assert explicit.sections["encrl"].model_conf == {} and explicit.sections["scratch"].overrides == {}
