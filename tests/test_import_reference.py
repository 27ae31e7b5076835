"""A pretrained ESPnet ASR model as the reference: espnet_lw.reference / bin.import_reference / lw.sh --ref_model.

A tiny ESPnet ASR model (Conformer d_model 16, 2 blocks, CTC, 10 tokens, global MVN) is written as
a recipe would (``exp/asr_tiny/config.yaml`` with recipe-relative paths + ``valid.loss.ave.pth``)
and packed with ESPnet's own ``python -m espnet2.bin.pack asr`` CLI, then imported and checked
against recipes that agree or disagree with it.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tiny_models import asr_config, write_stats

from espnet_lw.reference import Recipe, export_tokens, import_reference
from espnet_lw.tasks.asr import LWASRTask
from espnet_lw.utils.cli import UserError
from espnet_lw.utils.io import sha256_of

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
LW_SH = REPO / "egs2" / "TEMPLATE" / "lw1" / "lw.sh"
TOKENS = ["<blank>", "<unk>", "a", "b", "c", "d", "e", "f", "g", "<sos/eos>"]
FRONTEND = {"n_fft": 128, "win_length": 128, "hop_length": 64, "n_mels": 8}
ENCODER = {"output_size": 16, "attention_heads": 2, "linear_units": 32, "num_blocks": 2, "input_layer": "conv2d",
           "cnn_module_kernel": 3, "macaron_style": True, "rel_pos_type": "latest", "pos_enc_layer_type": "rel_pos",
           "selfattention_layer_type": "rel_selfattn", "use_cnn_module": True}
STATS = "exp/asr_stats_raw_bpe7/train/feats_stats.npz"
BPE = "data/token_list/bpe_unigram7/bpe.model"
TOKEN_LIST = "data/token_list/bpe_unigram7/tokens.txt"

def full_config(**over) -> dict:
    """A complete ESPnet ASR config as training writes it (recipe-relative paths), updated with ``over``."""
    over = {"token_type": "bpe", "bpemodel": BPE, "normalize_conf": {"stats_file": STATS}, **over}
    return asr_config(TOKENS, {**FRONTEND, "fs": "16k"}, ENCODER, **over)


def write_recipe(d: Path) -> Path:
    """A recipe dir with stage 5's tokens + bpe model, stage 10's stats and the training config."""
    (d / TOKEN_LIST).parent.mkdir(parents=True, exist_ok=True)
    (d / TOKEN_LIST).write_text("".join(t + "\n" for t in TOKENS), encoding="utf-8")
    (d / BPE).write_bytes(b"a sentencepiece model")
    write_stats(d / STATS)
    (d / "conf").mkdir(exist_ok=True)
    (d / "conf" / "tiny.yaml").write_text(yaml.safe_dump(
        {"frontend": "default", "frontend_conf": dict(FRONTEND), "encoder": "conformer",
         "encoder_conf": dict(ENCODER), "max_epoch": 3}))
    return d


def write_trained_model(recipe: Path, name: str = "asr_tiny", seed: int = 0, drop_key: str | None = None,
                        **over) -> tuple[Path, Path]:
    """``recipe/exp/<name>/config.yaml`` + ``valid.loss.ave.pth`` as ESPnet training leaves them."""
    conf = full_config(**over)
    exp = recipe / "exp" / name
    exp.mkdir(parents=True, exist_ok=True)
    build_conf = copy.deepcopy(conf)
    if conf["normalize"] == "global_mvn":
        build_conf["normalize_conf"] = {"stats_file": str(recipe / STATS)}
    torch.manual_seed(seed)
    model = LWASRTask.build_model(argparse.Namespace(**build_conf))
    state = model.state_dict()
    if drop_key:
        state.pop(drop_key)
    (exp / "config.yaml").write_text(yaml.safe_dump(conf), encoding="utf-8")
    torch.save(state, exp / "valid.loss.ave.pth")
    return exp / "config.yaml", exp / "valid.loss.ave.pth"


def pack(recipe: Path, exp: str, out: Path, options=(STATS, BPE)) -> Path:
    """ESPnet's own pack CLI, run from the recipe dir like asr.sh's packing stage."""
    cmd = [sys.executable, "-m", "espnet2.bin.pack", "asr", "--asr_train_config", f"exp/{exp}/config.yaml",
           "--asr_model_file", f"exp/{exp}/valid.loss.ave.pth", "--outpath", str(out)]
    for o in options:
        cmd += ["--option", o]
    subprocess.run(cmd, cwd=recipe, check=True, capture_output=True, text=True)
    return out


def recipe_of(d: Path, **over) -> Recipe:
    kw = dict(token_list=d / TOKEN_LIST, token_type="bpe", bpemodel=d / BPE, fs=16000,
              asr_config=d / "conf" / "tiny.yaml", stats_file=d / STATS, normalize="global_mvn")
    kw.update(over)
    return Recipe(**kw)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """(recipe dir, packed zip) of a tiny trained model; the recipe agrees with the model."""
    base = tmp_path_factory.mktemp("pretrained")
    src = write_recipe(base / "src_recipe")  # where the model was trained
    write_trained_model(src)
    zip_path = pack(src, "asr_tiny", base / "asr_tiny.zip")
    recipe = write_recipe(base / "recipe")   # the recipe that uses it (its own copies of the same files)
    return recipe, zip_path, src


def no_leftovers(parent: Path) -> None:
    assert not [p.name for p in parent.iterdir() if p.name.startswith(".") and ".tmp." in p.name]


# ------------------------------------------------------------------------------ success
def test_packed_model_imports_and_loads_strictly(packed, tmp_path):
    from espnet_lw.models.loading import load_reference

    recipe, zip_path, src = packed
    out = tmp_path / "exp" / "asr_ref_pretrained"
    status, _ = import_reference(zip_path, out, recipe_of(recipe))
    assert status == "imported"
    for f in ("config.yaml", "valid.loss.ave.pth", "feats_stats.npz", "bpe.model", "tokens.txt", "params.txt",
              "source.txt", "meta.yaml", ".done.stage11"):
        assert (out / f).is_file(), f
    conf = yaml.safe_load((out / "config.yaml").read_text())
    assert conf["normalize_conf"]["stats_file"] == str(out / "feats_stats.npz")
    assert conf["bpemodel"] == str(out / "bpe.model")
    assert conf["token_list"] == TOKENS
    assert (out / "tokens.txt").read_text().split() == TOKENS
    # the weights are the packed ones, and they load strictly (load_reference refuses any key mismatch)
    original = torch.load(src / "exp" / "asr_tiny" / "valid.loss.ave.pth")
    model, _ = load_reference(out / "config.yaml", out / "valid.loss.ave.pth")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, original[k])
    # and ESPnet's own loader reads the imported dir too
    espnet_model, _ = LWASRTask.build_model_from_file(out / "config.yaml", out / "valid.loss.ave.pth", "cpu")
    assert len(espnet_model.encoder.encoders) == 2
    n = sum(p.numel() for p in model.parameters())
    assert (out / "params.txt").read_text().splitlines()[0] == str(n)
    info = yaml.safe_load((out / "source.txt").read_text())
    assert info["source"] == {"path": str(zip_path.resolve()), "sha256": sha256_of(zip_path)}
    assert info["config"] == "exp/asr_tiny/config.yaml"
    assert info["num_params"] == n
    assert (out / "feats_stats.npz").read_bytes() == (src / STATS).read_bytes()
    # what students would inherit from it and differs from the recipe is noted
    assert [n for n in info["notes"] if "max_epoch: 40 (model) vs 3 (recipe)" in n]
    no_leftovers(out.parent)


def test_reimport_skipped_rechecked_or_refused(packed, tmp_path):
    recipe, zip_path, src = packed
    out = tmp_path / "ref"
    rec = recipe_of(recipe)
    assert import_reference(zip_path, out, rec)[0] == "imported"
    stamp = (out / "valid.loss.ave.pth").stat().st_mtime_ns
    assert import_reference(zip_path, out, rec)[0] == "skipped"
    # the recipe's statistics were redone (stage 10): same model, checked again, files untouched
    write_stats(recipe / STATS, seed=1)
    try:
        assert import_reference(zip_path, out, rec)[0] == "rechecked"
        assert import_reference(zip_path, out, rec)[0] == "skipped"
    finally:
        write_stats(recipe / STATS)
    assert (out / "valid.loss.ave.pth").stat().st_mtime_ns == stamp
    # another model (here: config + pth of another training run) is not imported over it ...
    cfg, pth = write_trained_model(src, "asr_other", seed=3)
    with pytest.raises(UserError, match="holds another imported reference") as e:
        import_reference(cfg, out, rec, ref_model_file=pth)
    assert "--overwrite true" in str(e.value)
    # ... unless asked: the old import is kept aside
    assert import_reference(cfg, out, rec, ref_model_file=pth, overwrite=True)[0] == "imported"
    assert len(list(tmp_path.glob("ref.old.*"))) == 1
    info = yaml.safe_load((out / "source.txt").read_text())
    assert info["source"]["model"]["sha256"] == sha256_of(pth)
    assert info["kind"] == "config.yaml + model file"
    # the relative stats / bpe paths of a config were found from its recipe dir
    assert (out / "feats_stats.npz").read_bytes() == (src / STATS).read_bytes()
    no_leftovers(tmp_path)


def test_exp_dir_and_stats_rebuilt_from_the_checkpoint(packed, tmp_path, monkeypatch):
    """An exp dir works as a source; a pack without the stats file gets them back from the checkpoint."""
    from espnet2.layers.global_mvn import GlobalMVN

    recipe, _, src = packed
    monkeypatch.chdir(tmp_path)
    assert import_reference(src / "exp" / "asr_tiny", tmp_path / "from_dir", recipe_of(recipe))[0] == "imported"
    bare = pack(src, "asr_tiny", tmp_path / "bare.zip", options=())
    out = tmp_path / "bare_ref"
    assert import_reference(bare, out, recipe_of(recipe))[0] == "imported"
    notes = yaml.safe_load((out / "source.txt").read_text())["notes"]
    assert any("rebuilt from the checkpoint" in n for n in notes)
    assert any("sentencepiece model" in n for n in notes)  # the recipe's bpe.model stands in
    state = torch.load(out / "valid.loss.ave.pth")
    mvn = GlobalMVN(out / "feats_stats.npz")
    torch.testing.assert_close(mvn.mean.float(), state["normalize.mean"].float())
    torch.testing.assert_close(mvn.std.float(), state["normalize.std"].float())


# ------------------------------------------------------------------------------ mismatches
def _refused(zip_path, out, recipe, *patterns) -> str:
    with pytest.raises(UserError) as e:
        import_reference(zip_path, out, recipe)
    msg = str(e.value)
    for p in patterns:
        assert p in msg, f"{p!r} not in:\n{msg}"
    assert f"{zip_path}:exp/asr_tiny/config.yaml" in msg  # names the file
    assert not out.exists()
    no_leftovers(out.parent)
    return msg


def test_token_list_mismatch(packed, tmp_path):
    recipe, zip_path, _ = packed
    other = tmp_path / "tokens.txt"
    other.write_text("".join(t + "\n" for t in ["<blank>", "<unk>", "x", "b", "y", "d", "e", "f", "g", "h", "i",
                                                  "<sos/eos>"]))
    msg = _refused(zip_path, tmp_path / "ref", recipe_of(recipe, token_list=other),
                   "the model has 10 tokens", f"{other} has 12", "#2 'a' vs 'x'", "#4 'c' vs 'y'",
                   "#9 '<sos/eos>' vs 'h'", "--export_tokens", "1 problem")
    assert "sampling rate" not in msg


def test_sampling_rate_mismatch(packed, tmp_path):
    recipe, zip_path, _ = packed
    _refused(zip_path, tmp_path / "ref", recipe_of(recipe, fs=8000),
             "sampling rate: frontend_conf.fs is 16000 (model) but the recipe's audio is 8000", "--fs 16000")


def test_frontend_mismatch(packed, tmp_path):
    recipe, zip_path, _ = packed
    conf80 = tmp_path / "conf80.yaml"
    conf80.write_text(yaml.safe_dump({"frontend_conf": {**FRONTEND, "n_mels": 80, "hop_length": 160}}))
    stats80 = tmp_path / "stats80.npz"
    write_stats(stats80, dim=80)
    msg = _refused(zip_path, tmp_path / "ref", recipe_of(recipe, asr_config=conf80, stats_file=stats80),
                   "n_mels: 8 (model) vs 80 (recipe)", "hop_length: 64 (model) vs 160 (recipe)",
                   f"{stats80} has 80 dimensions, the model's features 8", "2 problems")
    assert "n_fft" not in msg and "win_length" not in msg  # only what differs


def test_all_problems_reported_together(packed, tmp_path):
    recipe, zip_path, _ = packed
    conf40 = tmp_path / "conf40.yaml"
    conf40.write_text(yaml.safe_dump({"frontend_conf": {**FRONTEND, "n_mels": 40}}))
    other = tmp_path / "tokens.txt"
    other.write_text("<blank>\n<unk>\nz\n<sos/eos>\n")
    _refused(zip_path, tmp_path / "ref", recipe_of(recipe, token_list=other, fs=22050, asr_config=conf40),
             "3 problems", "token list", "sampling rate", "n_mels: 8 (model) vs 40 (recipe)")


def test_checkpoint_with_missing_or_unexpected_keys(packed, tmp_path):
    recipe, _, src = packed
    cfg, pth = write_trained_model(src, "asr_missing", drop_key="encoder.encoders.1.feed_forward.w_1.weight")
    with pytest.raises(UserError, match="1 missing keys") as e:
        import_reference(cfg, tmp_path / "ref", recipe_of(recipe), ref_model_file=pth)
    assert "encoder.encoders.1.feed_forward.w_1.weight" in str(e.value)
    state = torch.load(pth)
    state["encoder.encoders.1.feed_forward.w_1.weight"] = torch.zeros(32, 16)
    state["decoder.extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(UserError, match="1 unexpected keys"):
        import_reference(cfg, tmp_path / "ref", recipe_of(recipe), ref_model_file=tmp_path / "extra.pth")
    assert not (tmp_path / "ref").exists()


def test_encoder_must_be_a_conformer(packed, tmp_path):
    recipe, _, src = packed
    enc = {k: ENCODER[k] for k in ("output_size", "attention_heads", "linear_units", "num_blocks", "input_layer")}
    cfg, pth = write_trained_model(src, "asr_transformer", encoder="transformer", encoder_conf=enc,
                                   model_conf={"ctc_weight": 0.0}, decoder="transformer",
                                   decoder_conf={"attention_heads": 2, "linear_units": 32, "num_blocks": 1})
    with pytest.raises(UserError) as e:
        import_reference(cfg, tmp_path / "ref", recipe_of(recipe), ref_model_file=pth)
    msg = str(e.value)
    assert "encoder: the model's encoder is 'transformer'" in msg
    assert "ctc_weight is 0" in msg


def test_hybrid_model_is_accepted_with_notes(packed, tmp_path):
    """CTC/attention model with utterance MVN, given as its .pth (config.yaml next to it): notes, no error."""
    recipe, _, src = packed
    _, pth = write_trained_model(src, "asr_hybrid", model_conf={"ctc_weight": 0.3}, decoder="transformer",
                                 decoder_conf={"attention_heads": 2, "linear_units": 32, "num_blocks": 1},
                                 normalize="utterance_mvn", normalize_conf={})
    out = tmp_path / "ref"
    assert import_reference(pth, out, recipe_of(recipe))[0] == "imported"
    notes = yaml.safe_load((out / "source.txt").read_text())["notes"]
    assert any("attention decoder" in n for n in notes)
    assert any("utterance_mvn" in n for n in notes)
    assert not (out / "feats_stats.npz").exists()


def test_export_tokens_then_import(packed, tmp_path):
    recipe, zip_path, _ = packed
    token_dir = tmp_path / "data" / "token_list" / "bpe_unigram5"
    token_dir.mkdir(parents=True)
    (token_dir / "tokens.txt").write_text("<blank>\n<unk>\nz\n<sos/eos>\n")
    rec = recipe_of(recipe, token_list=token_dir / "tokens.txt", bpemodel=token_dir / "bpe.model")
    with pytest.raises(UserError, match="--export_tokens"):
        import_reference(zip_path, tmp_path / "ref", rec)
    export_tokens(zip_path, token_dir)
    assert (token_dir / "tokens.txt").read_text().split() == TOKENS
    assert (token_dir / "bpe.model").read_bytes() == (recipe / BPE).read_bytes()
    assert (token_dir / ".done.stage5").exists()
    assert len(list(token_dir.parent.glob("bpe_unigram5.old.*"))) == 1
    assert import_reference(zip_path, tmp_path / "ref", rec)[0] == "imported"


def test_not_a_packed_model(tmp_path):
    bad = tmp_path / "x.zip"
    import zipfile

    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("exp/config.yaml", "a: 1\n")
    with pytest.raises(UserError, match="no meta.yaml"):
        import_reference(bad, tmp_path / "ref")
    with pytest.raises(UserError, match="no such file"):
        import_reference(tmp_path / "missing.zip", tmp_path / "ref")
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "config.yaml").write_text("encoder: conformer\n")
    with pytest.raises(UserError, match="--ref_model_file"):
        import_reference(tmp_path / "exp", tmp_path / "ref")


# ------------------------------------------------------------------------------ the stage driver
def test_lw_sh_has_the_option():
    subprocess.run(["bash", "-n", str(LW_SH)], check=True)
    out = subprocess.run(["bash", str(LW_SH), "--help"], capture_output=True, text=True, check=True).stdout
    assert "--ref_model PATH" in out and "espnet2.bin.pack" in out


def test_lw_sh_stage_11_with_ref_model(packed, tmp_path):
    """Stage 11 of the driver in a scratch recipe dir holding only what stage 11 needs (no student)."""
    recipe, zip_path, _ = packed
    d = tmp_path / "lw1"
    shutil.copytree(recipe, d)
    args = ["bash", str(LW_SH), "--stage", "11", "--stop_stage", "11", "--train_set", "train", "--valid_set", "dev",
            "--test_sets", "test", "--nbpe", "7", "--fs", "16k", "--asr_config", "conf/tiny.yaml",
            "--required_tools", "sox", "--python", sys.executable, "--ref_model", str(zip_path)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # a mismatch (here: the audio's sampling rate) stops stage 11 before anything is trained or written
    bad = subprocess.run([*args, "--fs", "8k"], cwd=d, env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1, bad.stderr
    assert "sampling rate: frontend_conf.fs is 16000 (model) but the recipe's audio is 8000" in bad.stderr
    assert "importing --ref_model" in bad.stderr and "nothing was trained" in bad.stderr
    assert not (d / "exp" / "asr_ref_pretrained").exists()
    ok = subprocess.run(args, cwd=d, env=env, capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr
    assert (d / "exp" / "asr_ref_pretrained" / ".done.stage11").exists()
    assert "using the reference in exp/asr_ref_pretrained" in ok.stderr
    conf = yaml.safe_load((d / "exp" / "asr_ref_pretrained" / "config.yaml").read_text())
    assert conf["normalize_conf"]["stats_file"] == "exp/asr_ref_pretrained/feats_stats.npz"  # recipe-relative
    again = subprocess.run(args, cwd=d, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    times = (d / "exp" / "stage_times.tsv").read_text().splitlines()
    assert [line.split("\t")[-1] for line in times if "importing" in line] == ["done", "skipped"]
    both = subprocess.run([*args, "--ref_exp", "exp/x"], cwd=d, env=env, capture_output=True, text=True)
    assert both.returncode == 1 and "not both" in both.stderr


def test_pack_with_absolute_paths_from_another_machine(tmp_path):
    """Packed from outside its recipe (absolute names in meta.yaml and config), then the originals gone."""
    src = write_recipe(tmp_path / "elsewhere")
    cfg, pth = write_trained_model(src, normalize_conf={"stats_file": str(src / STATS)}, bpemodel=str(src / BPE))
    stats_bytes = (src / STATS).read_bytes()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    subprocess.run([sys.executable, "-m", "espnet2.bin.pack", "asr", "--asr_train_config", str(cfg),
                    "--asr_model_file", str(pth), "--option", str(src / STATS), "--option", str(src / BPE),
                    "--outpath", str(tmp_path / "abs.zip")], cwd=cwd, check=True, capture_output=True)
    src.rename(tmp_path / "gone")
    recipe = write_recipe(tmp_path / "recipe")
    out = tmp_path / "ref"
    assert import_reference(tmp_path / "abs.zip", out, recipe_of(recipe))[0] == "imported"
    assert (out / "feats_stats.npz").read_bytes() == stats_bytes
    assert (out / "bpe.model").read_bytes() == (recipe / BPE).read_bytes()
    notes = yaml.safe_load((out / "source.txt").read_text())["notes"]
    assert not [n for n in notes if "package" in n or "rebuilt" in n], notes  # every file came from the archive


def test_stats_file_not_matching_the_checkpoint_is_rebuilt(packed, tmp_path):
    from espnet2.layers.global_mvn import GlobalMVN

    recipe, _, src = packed
    cfg, pth = write_trained_model(src, "asr_stale")
    conf = yaml.safe_load(cfg.read_text())
    write_stats(tmp_path / "other_stats.npz", seed=5)
    conf["normalize_conf"] = {"stats_file": str(tmp_path / "other_stats.npz")}
    cfg.write_text(yaml.safe_dump(conf))
    out = tmp_path / "ref"
    assert import_reference(cfg, out, recipe_of(recipe), ref_model_file=pth)[0] == "imported"
    assert any("rebuilt from the checkpoint" in n for n in yaml.safe_load((out / "source.txt").read_text())["notes"])
    torch.testing.assert_close(GlobalMVN(out / "feats_stats.npz").mean.float(),
                               torch.load(pth)["normalize.mean"].float())
