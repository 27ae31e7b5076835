"""Stage 14 packing (issue 11, item 1): a tiny ``model: lw_ctc`` student packed with ESPnet's packer
is loaded and decoded by a process that never imports espnet_lw (plain ESPnet: ``unpack`` +
``Speech2Text``), and its text matches the same model decoded through espnet-lw.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest
import torch
import yaml
from test_export import write_model, write_scp

from espnet_lw.export.onnx_export import load_asr_model
from espnet_lw.export.pack import pack_model, results_table, stock_config
from espnet_lw.utils.cli import UserError, run_main

#: run by a fresh interpreter: ESPnet only (importing espnet_lw raises), prints one JSON line
PLAIN_ESPNET = r'''
import importlib.abc, json, sys

class _Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "espnet_lw" or name.startswith("espnet_lw."):
            raise ImportError(f"{name} imported by the plain-ESPnet process")
        return None

sys.meta_path.insert(0, _Refuse())
zip_path, out_dir, wav_path = sys.argv[1:4]
import soundfile, torch
from espnet2.bin.asr_inference import Speech2Text
from espnet2.main_funcs.pack_funcs import unpack

res = {}
kwargs = unpack(zip_path, out_dir)
res["unpacked"] = kwargs
try:  # a model tag (or a local zip) goes through espnet_model_zoo, which ESPnet does not install
    Speech2Text.from_pretrained(zip_path)
    res["from_pretrained_zip"] = "ok"
except ImportError as e:
    res["from_pretrained_zip"] = f"ImportError: {e}"
s2t = Speech2Text.from_pretrained(**kwargs, ctc_weight=1.0, lm_weight=0.0, beam_size=4, nbest=1)
res["model_class"] = f"{type(s2t.asr_model).__module__}.{type(s2t.asr_model).__name__}"
wav, rate = soundfile.read(wav_path, dtype="float32")
res["beam_text"] = s2t(wav)[0][0]  # ESPnet's own CTC beam search
with torch.no_grad():  # best path, as espnet-lw's greedy decoding
    enc, enc_lens = s2t.asr_model.encode(torch.from_numpy(wav)[None], torch.tensor([len(wav)]))
    best = s2t.asr_model.ctc.argmax(enc)[0, : int(enc_lens[0])].tolist()
ids = [t for i, t in enumerate(best) if t not in (0, s2t.asr_model.sos) and (i == 0 or t != best[i - 1])]
tokens = s2t.converter.ids2tokens(ids)
res["greedy_text"] = " ".join(s2t.tokenizer.tokens2text(tokens).split())
res["espnet_lw_modules"] = sorted(m for m in sys.modules if m.split(".")[0] == "espnet_lw")
print(json.dumps(res))
'''


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A recipe dir with a tiny lw_ctc student (stats path recipe-relative) and a dev wav.scp."""
    d = tmp_path_factory.mktemp("pack")
    cfg, pth = write_model(d, seed=5)
    scp = write_scp(d / "data" / "dev", n=3)
    return d, cfg, pth, scp


def test_packed_student_decodes_the_same_without_espnet_lw(student, tmp_path, monkeypatch):
    recipe, cfg, pth, scp = student
    results = tmp_path / "RESULTS.md"
    results.write_text("| dataset | WER |\n|---|---|\n| test | 41.0 |\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # not the recipe dir: the stats file is found from the config's place
    from espnet_lw.bin.pack_model import main as pack_main

    out = tmp_path / "packed" / "model.zip"
    run_main(pack_main, ["--asr_train_config", str(cfg), "--asr_model_file", str(pth), "--out", str(out),
                         "--results", str(results), "--command", "./run.sh --stage 11 --student_config s.yaml"])
    wav = scp.read_text().splitlines()[2].split()[1]
    plain = subprocess.Popen(
        [sys.executable, "-c", PLAIN_ESPNET, str(out), str(tmp_path / "unpacked"), wav],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        # meanwhile: the same model decoded by espnet-lw's decoding tool (greedy), from the training files,
        # in the recipe dir as stage 12 runs it
        from espnet_lw.bin.asr_inference import main as decode_main

        monkeypatch.chdir(recipe)

        one = tmp_path / "one" / "wav.scp"
        one.parent.mkdir()
        one.write_text(f"u2 {wav}\n", encoding="utf-8")
        run_main(decode_main, ["--asr_train_config", str(cfg), "--asr_model_file", str(pth), "--decoding", "greedy",
                               "--data_path_and_name_and_type", f"{one},speech,sound",
                               "--output_dir", str(tmp_path / "decode")])
        lw_text = (tmp_path / "decode" / "text").read_text(encoding="utf-8").split(maxsplit=1)[1].strip()
        stdout, stderr = plain.communicate(timeout=240)
    finally:
        if plain.poll() is None:
            plain.kill()
    assert plain.returncode == 0, stderr[-3000:]
    res = json.loads(stdout.strip().splitlines()[-1])
    assert res["espnet_lw_modules"] == []
    assert res["model_class"] == "espnet2.asr.espnet_model.ESPnetASRModel"
    assert res["unpacked"] == {"asr_train_config": str(tmp_path / "unpacked" / "exp" / "asr_tiny" / "config.yaml"),
                               "asr_model_file": str(tmp_path / "unpacked" / "exp" / "asr_tiny" / "model.pth")}
    assert res["from_pretrained_zip"].startswith("ImportError") and "espnet_model_zoo" in res["from_pretrained_zip"]
    assert lw_text and res["greedy_text"] == lw_text
    assert isinstance(res["beam_text"], str)

    # what the zip holds
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        packed = yaml.safe_load(z.read("exp/asr_tiny/config.yaml"))
        card = z.read("README.md").decode("utf-8")
    assert names == {"meta.yaml", "README.md", "exp/asr_tiny/config.yaml", "exp/asr_tiny/model.pth",
                     "exp/asr_tiny/feats_stats.npz"}
    assert packed["model"] == "espnet" and packed["model_conf"]["ctc_weight"] == 1.0 and packed["decoder"] is None
    assert packed["normalize_conf"]["stats_file"] == "exp/asr_tiny/feats_stats.npz"
    unpacked_dir = tmp_path / "unpacked" / "exp" / "asr_tiny"
    unpacked = yaml.safe_load((unpacked_dir / "config.yaml").read_text())
    assert unpacked["normalize_conf"]["stats_file"] == str(unpacked_dir / "feats_stats.npz")
    assert "| test | 41.0 |" in card and "./run.sh --stage 11 --student_config s.yaml" in card
    model, _ = load_asr_model(cfg, pth)
    assert "trained as `lw_ctc`" in card and f"parameters | {sum(p.numel() for p in model.parameters()):,} (" in card
    assert not list(out.parent.glob(".*")), "no temporary files left next to the zip"


def test_packed_student_is_a_ref_model(student, tmp_path):
    """lw.sh --ref_model takes the packed zip (the student as another recipe's reference)."""
    from espnet_lw.reference import Recipe, import_reference

    recipe, cfg, pth, _ = student
    zip_path = pack_model(cfg, pth, tmp_path / "student.zip").zip_path
    out = tmp_path / "other_recipe" / "exp" / "asr_ref_pretrained"
    status, _ = import_reference(zip_path, out, Recipe(token_type="char", fs=16000, normalize="global_mvn",
                                                       stats_file=recipe / "exp/asr_stats/train/feats_stats.npz"))
    assert status == "imported" and (out / "valid.loss.ave.pth").is_file()
    assert yaml.safe_load((out / "config.yaml").read_text())["model"] == "espnet"


def test_results_table_from_stage13_scores(tmp_path):
    decode = tmp_path / "decode_ctc_greedy_asr_model_valid.loss.ave"
    for dset, err in (("dev", 20.5), ("test", 22.25)):
        for kind in ("wer", "cer"):
            f = decode / dset / f"score_{kind}" / "result.txt"
            f.parent.mkdir(parents=True)
            f.write_text(f"| Sum/Avg |   60   1200 | 80.0 15.0 5.0 2.0 {err} 60.0 |\n", encoding="utf-8")
    table = results_table(decode)
    assert "### WER (decode_ctc_greedy_asr_model_valid.loss.ave)" in table and "### CER" in table
    assert "|dev|60|1200|80.0|15.0|5.0|2.0|20.5|60.0|" in table
    assert "|test|60|1200|80.0|15.0|5.0|2.0|22.2|60.0|" in table
    with pytest.raises(UserError, match="no scored data sets"):
        results_table(tmp_path / "empty")


def test_stock_config():
    conf = {"model": "lw_ctc", "model_conf": {"lsm_weight": 0.1}, "decoder": None, "encoder": "conformer"}
    packed = stock_config(conf)
    assert packed["model"] == "espnet" and packed["decoder"] is None and packed["decoder_conf"] == {}
    assert packed["model_conf"] == {"lsm_weight": 0.1, "ctc_weight": 1.0, "report_wer": False}
    assert conf["model"] == "lw_ctc"  # the input is left alone
    ref = {"model": "espnet", "model_conf": {"ctc_weight": 0.3}, "decoder": "transformer"}
    assert stock_config(ref) == ref
    with pytest.raises(UserError, match="EncRL training model"):
        stock_config({"model": "lw_encrl"}, "exp/encrl/config.yaml")


def test_missing_stats_file_is_rebuilt_from_the_model(student, tmp_path):
    from espnet2.layers.global_mvn import GlobalMVN

    recipe, cfg, pth, _ = student
    conf = yaml.safe_load(cfg.read_text())
    conf["normalize_conf"] = {"stats_file": "exp/asr_stats_gone/train/feats_stats.npz"}
    moved = cfg.parent.parent / "asr_moved" / "config.yaml"
    moved.parent.mkdir(exist_ok=True)
    moved.write_text(yaml.safe_dump(conf), encoding="utf-8")
    res = pack_model(moved, pth, tmp_path / "moved.zip")
    with zipfile.ZipFile(res.zip_path) as z:
        z.extract("exp/asr_moved/feats_stats.npz", tmp_path)
    model, _ = load_asr_model(cfg, pth)
    mvn = GlobalMVN(tmp_path / "exp" / "asr_moved" / "feats_stats.npz")
    assert torch.allclose(mvn.mean.double(), model.normalize.mean.double(), atol=1e-5)
    assert torch.allclose(mvn.std.double(), model.normalize.std.double(), atol=1e-5)


def test_bpe_model_is_packed_and_user_errors(student, tmp_path):
    recipe, cfg, pth, _ = student
    bpe_dir = recipe / "data" / "token_list" / "bpe_unigram7"
    bpe_dir.mkdir(parents=True, exist_ok=True)
    (bpe_dir / "bpe.model").write_bytes(b"not really a sentencepiece model")
    conf = yaml.safe_load(cfg.read_text())
    conf.update(token_type="bpe", bpemodel="data/token_list/bpe_unigram7/bpe.model")
    bpe_cfg = cfg.parent.parent / "asr_bpe" / "config.yaml"
    bpe_cfg.parent.mkdir(exist_ok=True)
    bpe_cfg.write_text(yaml.safe_dump(conf), encoding="utf-8")
    res = pack_model(bpe_cfg, pth, tmp_path / "bpe.zip")
    assert res.config["bpemodel"] == "exp/asr_bpe/bpe.model"
    with zipfile.ZipFile(res.zip_path) as z:
        assert z.read("exp/asr_bpe/bpe.model") == b"not really a sentencepiece model"

    with pytest.raises(UserError, match="must be a .zip"):
        pack_model(cfg, pth, tmp_path / "model.tar")
    with pytest.raises(UserError, match="no such model file"):
        pack_model(cfg, tmp_path / "none.pth", tmp_path / "x.zip")
    conf.update(model="lw_encrl")
    bpe_cfg.write_text(yaml.safe_dump(conf), encoding="utf-8")
    with pytest.raises(UserError, match="pack the fine-tuned student"):
        pack_model(bpe_cfg, pth, tmp_path / "x.zip")
    conf.update(model="lw_ctc", bpemodel="data/none/bpe.model")
    bpe_cfg.write_text(yaml.safe_dump(conf), encoding="utf-8")
    with pytest.raises(UserError, match="bpemodel data/none/bpe.model not found"):
        pack_model(bpe_cfg, pth, tmp_path / "x.zip")
