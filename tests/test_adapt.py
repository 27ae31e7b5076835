"""Field adaptation (espnet_lw.adapt): the config schema, replay in every batch, the held-out
validation data, bring-your-own data (manifest / Kaldi dir) with its errors, the derived ESPnet
training config, the guard against redoing an adaptation with other options, freezing through a
real ESPnet training step, and the before/after table. No TTS needed: the audio is random noise."""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from tiny_models import asr_config, write_stats

from espnet_lw.adapt.config import AdaptConfig
from espnet_lw.adapt.field_data import import_field_data, read_manifest, split_by_speaker
from espnet_lw.adapt.prepare import RUN_KEYS, check_freeze, prepare, train_config, write_reference_view
from espnet_lw.adapt.replay import REPLAY_PREFIX, batch_layout, build_adapt_data
from espnet_lw.adapt.report import write_report
from espnet_lw.data.kaldi_dir import read_kv, validate_data_dir, write_kv
from espnet_lw.utils.cli import ConfigError, UserError

REPO = Path(__file__).resolve().parents[1]
FS = 16000
TOKENS = ["<blank>", "<unk>", " ", "A", "B", "C", "D", "E", "<sos/eos>"]
FRONTEND = {"n_fft": 128, "win_length": 128, "hop_length": 64, "n_mels": 8, "fs": FS}
ENCODER = {"output_size": 16, "attention_heads": 2, "linear_units": 32, "num_blocks": 2, "input_layer": "conv2d",
           "cnn_module_kernel": 3, "macaron_style": True, "rel_pos_type": "latest", "pos_enc_layer_type": "rel_pos",
           "selfattention_layer_type": "rel_selfattn", "use_cnn_module": True}


def _wav(path: Path, seconds: float, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(seed).normal(0, 0.1, int(seconds * FS)).astype(np.float32)
    sf.write(path, x, FS)
    return path


def dump_dir(d: Path, prefix: str, n: int, spk: int = 2, seed: int = 0) -> Path:
    """A formatted (dump/raw-like) data dir: n utterances of random audio, transcripts of A-E."""
    wav, text, utt2spk, n_samples = {}, {}, {}, {}
    rng = np.random.default_rng(seed)
    for i in range(n):
        s = f"{prefix}{i % spk}"
        u = f"{s}-{i:03d}"
        secs = 0.3 + 0.1 * (i % 3)
        wav[u] = str(_wav(d / "audio" / f"{u}.wav", secs, seed * 1000 + i))
        text[u] = " ".join("".join(rng.choice(list("ABCDE"), 3)) for _ in range(2))
        utt2spk[u] = s
        n_samples[u] = str(int(secs * FS))
    for name, table in (("wav.scp", wav), ("text", text), ("utt2spk", utt2spk), ("utt2num_samples", n_samples)):
        write_kv(d / name, table)
    spk2utt = {}
    for u, s in utt2spk.items():
        spk2utt.setdefault(s, []).append(u)
    write_kv(d / "spk2utt", spk2utt)
    return d


# ------------------------------------------------------------------------------ the config
def test_shipped_configs_load():
    cfg = AdaptConfig.load(REPO / "conf" / "adapt.yaml")
    assert cfg.replay == 0.67 and cfg.epochs == 8 and cfg.noise_scp == "data/noise/wav.scp"
    assert cfg.noise_db_range_str == "5_20"
    base = vars(cfg)
    # the no-replay twin differs in replay only (the forgetting baseline of the same recipe)
    noreplay = vars(AdaptConfig.load(REPO / "conf" / "adapt_noreplay.yaml"))
    assert {k: v for k, v in noreplay.items() if base[k] != v} == {"replay": 0.0}
    # the tuning candidates differ from conf/adapt.yaml in what their names say, and only there
    tune = sorted((REPO / "conf" / "adapt_tune").glob("*.yaml"))
    assert len(tune) == 10
    for f in tune:
        diff = {k: v for k, v in vars(AdaptConfig.load(f)).items() if base[k] != v}
        said = {}
        for part in f.stem.split("_"):
            if part == "freeze":
                said["freeze"] = ["encoder.encoders"]
            elif part == "noise0":
                said["noise_apply_prob"] = 0.0
            elif part.startswith("lr"):
                mant, exp = part[2:].split("e")  # lr25e5: 25e-5
                said["lr"] = float(f"{mant}e-{exp}")
            elif part.startswith("replay"):
                said["replay"] = int(part[6:]) / 100
            elif part.startswith("e"):
                said["epochs"] = int(part[1:])
        said = {k: v for k, v in said.items() if base[k] != v}
        assert diff == said, f.name


@pytest.mark.parametrize("data, message", [
    ({"epoch": 3}, "unknown key(s) epoch; the keys are: epochs, lr"),
    ({"lr": "fast"}, "lr must be a number"),
    ({"lr": 0}, "lr must be in (0, 1]"),
    ({"replay": 1.0}, "replay must be in [0, 1)"),
    ({"epochs": 2.5}, "epochs must be an integer"),
    ({"freeze": 3}, "freeze must be a list of parameter-name prefixes"),
    ({"noise_db_range": [20, 5]}, "noise_db_range must be [low, high]"),
    ({"valid_share": 0.9}, "valid_share must be in [0, 0.5]"),
])
def test_config_refuses_bad_keys_and_values(tmp_path, data, message):
    f = tmp_path / "adapt.yaml"
    f.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as e:
        AdaptConfig.load(f)
    assert message in str(e.value) and str(f) in str(e.value)


# ------------------------------------------------------------------------------ replay
@pytest.mark.parametrize("n_field, batch, share", [(1, 4, 0.25), (8, 4, 0.25), (30, 16, 0.25), (100, 16, 0.5),
                                                   (7, 3, 0.1), (50, 8, 0.0)])
def test_batch_layout_has_the_share_in_every_batch(n_field, batch, share):
    layout = batch_layout(n_field, batch, share)
    assert sum(f for f, _ in layout) == n_field
    for f, r in layout:
        n = f + r
        if share:
            assert r >= 1 and f >= 1
            assert abs(r - share * n) <= 1.0, layout
        else:
            assert r == 0


def test_replay_share_in_every_espnet_batch(tmp_path):
    """The written training dir, cut by ESPnet's own UnsortedBatchSampler, has the share in every batch."""
    from espnet2.samplers.unsorted_batch_sampler import UnsortedBatchSampler

    field = dump_dir(tmp_path / "field", "f", 30, seed=1)
    train = dump_dir(tmp_path / "train", "t", 40, seed=2)
    summary = build_adapt_data(field, tmp_path / "out", fs=FS, batch_size=8, replay=0.25, replay_dir=train,
                               valid_share=0.1, seed=0)
    assert summary.valid_utts == 3 and summary.field_utts == 27
    batches = list(UnsortedBatchSampler(batch_size=8, key_file=str(tmp_path / "out/shape/train/speech_shape")))
    assert len(batches) == summary.batches
    for b in batches:
        n_replay = sum(k.startswith(REPLAY_PREFIX) for k in b)
        assert abs(n_replay - 0.25 * len(b)) <= 1.0 and n_replay >= 1, b
    keys = [k for b in batches for k in b]
    field_train = {k for k in keys if not k.startswith(REPLAY_PREFIX)}
    valid = set(read_kv(tmp_path / "out/valid/text"))
    assert len(field_train) == 27 and not field_train & valid and field_train | valid == set(read_kv(field / "text"))
    replayed = {k[len(REPLAY_PREFIX):] for k in keys if k.startswith(REPLAY_PREFIX)}
    assert replayed <= set(read_kv(train / "text")) and len(replayed) == summary.replay_utts
    assert 0.2 <= summary.replay_share <= 0.3
    # a replayed utterance keeps its audio and transcript; the dirs validate
    text = read_kv(tmp_path / "out/train/text")
    k = next(iter(replayed))
    assert text[REPLAY_PREFIX + k] == read_kv(train / "text")[k]
    for sub in ("train", "valid"):
        assert validate_data_dir(tmp_path / "out" / sub) == []


def test_no_replay_and_minutes(tmp_path):
    field = dump_dir(tmp_path / "field", "f", 20, seed=1)
    s = build_adapt_data(field, tmp_path / "out", fs=FS, batch_size=4, valid_share=0.0, minutes=2.0 / 60, seed=0)
    assert s.replay_utts == 0 and s.valid_utts == 0
    assert 2.0 <= s.field_seconds <= 2.5  # stops once 2 s are reached (utterances of 0.3-0.5 s)
    assert read_kv(tmp_path / "out/valid/text") == read_kv(tmp_path / "out/train/text")  # validates on itself


# ------------------------------------------------------------------------------ bring your own data
def test_manifest_import_and_speaker_split(tmp_path):
    site = tmp_path / "site"
    rows = []
    for spk in ("ann", "bob", "cy"):
        for i in range(2):
            _wav(site / spk / f"u{i}.wav", 0.3, i)
            rows.append(f"{spk}/u{i}.wav\tHello  there {i}\t{spk}")
    (site / "manifest.tsv").write_text("# audio<TAB>text<TAB>speaker\n" + "\n".join(rows) + "\n")
    written = import_field_data(tmp_path / "data" / "site", manifest=site / "manifest.tsv", text_case="upper",
                                test_share=0.34)
    d = tmp_path / "data" / "site"
    assert written == [d, tmp_path / "data/site_adapt", tmp_path / "data/site_test"]
    text = read_kv(d / "text")
    assert text["ann-u0"] == "HELLO THERE 0" and read_kv(d / "utt2spk")["bob-u1"] == "bob"
    assert all(Path(p).is_absolute() for p in read_kv(d / "wav.scp").values())
    spk_a = set(read_kv(tmp_path / "data/site_adapt/utt2spk").values())
    spk_t = set(read_kv(tmp_path / "data/site_test/utt2spk").values())
    assert spk_a and spk_t and not spk_a & spk_t and spk_a | spk_t == {"ann", "bob", "cy"}
    for x in written:
        assert validate_data_dir(x) == []
    # two columns + --speaker dir: the folder is the speaker
    (site / "two.tsv").write_text("ann/u0.wav\thi\nbob/u1.wav\tyo\n")
    utts = read_manifest(site / "two.tsv", speaker="dir")
    assert [(u.uttid, u.speaker) for u in utts] == [("ann-u0", "ann"), ("bob-u1", "bob")]
    assert [u.speaker for u in read_manifest(site / "two.tsv")] == ["u0", "u1"]  # default: one speaker per utt


@pytest.mark.parametrize("line, message", [
    ("missing.wav\tHELLO", "audio file not found"),
    ("ok.wav\t   ", "empty transcript for ok.wav"),
    ("ok.wav HELLO", "expected 'audio_path<TAB>transcript[<TAB>speaker]'"),
    ("empty.wav\tHELLO", "audio file is empty"),
])
def test_manifest_errors_name_the_file_and_line(tmp_path, line, message):
    _wav(tmp_path / "ok.wav", 0.3, 0)
    (tmp_path / "empty.wav").write_bytes(b"")
    m = tmp_path / "m.tsv"
    m.write_text(f"ok.wav\tFIRST LINE\n{line}\n")
    with pytest.raises(UserError) as e:
        import_field_data(tmp_path / "data" / "x", manifest=m)
    assert message in str(e.value) and f"{m}:2" in str(e.value)
    assert not (tmp_path / "data" / "x").exists()
    # the same through the command line: exit 1, one clear line, no traceback
    proc = subprocess.run([sys.executable, "-m", "espnet_lw.bin.import_field_data", "--manifest", str(m),
                           str(tmp_path / "data" / "x")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr


def test_kaldi_dir_import_errors(tmp_path):
    src = tmp_path / "kaldi"
    src.mkdir()
    audio = _wav(tmp_path / "a.wav", 0.3, 0)
    write_kv(src / "wav.scp", {"s1-a": str(audio), "s1-b": str(tmp_path / "gone.wav")})
    write_kv(src / "text", {"s1-a": "HI", "s1-b": "YO"})
    write_kv(src / "utt2spk", {"s1-a": "s1", "s1-b": "s1"})
    with pytest.raises(UserError, match=r"line 2: audio file not found: .*gone.wav"):
        import_field_data(tmp_path / "out", kaldi_dir=src)
    write_kv(src / "wav.scp", {"s1-a": str(audio), "s1-b": str(audio)})
    write_kv(src / "text", {"s1-a": "HI", "s1-b": ""})
    with pytest.raises(UserError, match="line 2: empty transcript for utterance 's1-b'"):
        import_field_data(tmp_path / "out", kaldi_dir=src)
    write_kv(src / "text", {"s1-a": "HI", "s1-b": "YO"})
    assert import_field_data(tmp_path / "out", kaldi_dir=src) == [tmp_path / "out"]
    assert read_kv(tmp_path / "out" / "spk2utt") == {"s1": "s1-a s1-b"}
    with pytest.raises(UserError, match="only 1 speaker"):
        split_by_speaker(read_kv(tmp_path / "out" / "utt2spk"), 0.5)


# ------------------------------------------------------------------------------ a tiny trained model
def tiny_model_dir(root: Path, num_blocks: int = 2) -> Path:
    """``root/exp/asr_tiny``: config.yaml (as training writes it) + valid.loss.ave.pth, char tokens."""
    from espnet_lw.tasks.asr import LWASRTask

    stats = write_stats(root / "exp/stats/feats_stats.npz")
    conf = asr_config(TOKENS, FRONTEND, {**ENCODER, "num_blocks": num_blocks}, token_type="char",
                      normalize_conf={"stats_file": str(stats)}, batch_type="numel", batch_bins=800000,
                      optim="adam", optim_conf={"lr": 0.002, "weight_decay": 1e-6}, scheduler="warmuplr",
                      scheduler_conf={"warmup_steps": 300}, max_epoch=20, num_workers=0, use_preprocessor=True,
                      train_data_path_and_name_and_type=[["dump/raw/train/wav.scp", "speech", "sound"]],
                      output_dir="exp/asr_tiny", init_param=["somewhere.pth"], freeze_param=["x"])
    d = root / "exp" / "asr_tiny"
    d.mkdir(parents=True)
    torch.manual_seed(0)
    model = LWASRTask.build_model(argparse.Namespace(**copy.deepcopy(conf)))
    (d / "config.yaml").write_text(yaml.safe_dump(conf))
    torch.save(model.state_dict(), d / "valid.loss.ave.pth")
    return d


def test_train_config_carries_the_model_not_the_run(tmp_path):
    d = tiny_model_dir(tmp_path)
    conf = yaml.safe_load((d / "config.yaml").read_text())
    cfg = AdaptConfig.from_dict({"epochs": 3, "lr": 1e-4, "freeze": ["encoder.embed"], "noise_scp": "n.scp",
                                 "noise_db_range": [0, 10], "batch_size": 4})
    out = train_config(conf, cfg, str(d / "valid.loss.ave.pth"))
    assert not set(out) & (set(RUN_KEYS) - {"init_param", "freeze_param", "noise_scp", "noise_apply_prob",
                                            "noise_db_range"})
    assert out["encoder_conf"] == conf["encoder_conf"] and out["token_list"] == TOKENS
    assert out["normalize_conf"] == conf["normalize_conf"] and out["frontend_conf"] == conf["frontend_conf"]
    assert out["optim_conf"] == {"lr": 1e-4, "weight_decay": 1e-6} and out["scheduler"] is None
    assert out["max_epoch"] == 3 and out["batch_type"] == "unsorted" and out["batch_size"] == 4
    assert out["init_param"] == [str(d / "valid.loss.ave.pth")] and out["freeze_param"] == ["encoder.embed"]
    assert out["noise_scp"] == "n.scp" and out["noise_db_range"] == "0_10"
    # a KD student adapts with plain CTC: the field data carries no cached reference posteriors
    kd_conf = dict(conf, model="lw_ctc", model_conf={**(conf.get("model_conf") or {}), "ctc_weight": 1.0,
                                                     "kd": {"weight": 1.0, "temperature": 2.0},
                                                     "kd_length_tolerance": 2})
    kd_out = train_config(kd_conf, cfg, str(d / "valid.loss.ave.pth"))["model_conf"]
    assert "kd" not in kd_out and "kd_length_tolerance" not in kd_out and kd_out["ctc_weight"] == 1.0
    keys = list(torch.load(d / "valid.loss.ave.pth"))
    check_freeze(["encoder.encoders.0", "ctc"], keys, "x")
    with pytest.raises(UserError, match="'encoder.encoder.0' names no parameter of the model; modules: .*encoders"):
        check_freeze(["encoder.encoder.0"], keys, "x")
    with pytest.raises(UserError, match="every parameter"):
        check_freeze(["encoder", "ctc", "normalize", "frontend"], keys, "x")


def _prepare(root: Path, d: Path, config: Path, **kw):
    return prepare(model_dir=d, model_file="valid.loss.ave.pth", config_file=config, adapt_data=root / "field",
                   replay_data=root / "train", out_dir=root / "exp/adapt_x", fs=FS, **kw)


def test_prepare_reuses_same_options_and_refuses_others(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    d = tiny_model_dir(tmp_path)
    dump_dir(tmp_path / "field", "f", 8, seed=1)
    dump_dir(tmp_path / "train", "t", 8, seed=2)
    cfg = tmp_path / "adapt.yaml"
    cfg.write_text("epochs: 1\nbatch_size: 4\nreplay: 0.25\n")
    assert _prepare(tmp_path, d, cfg) == "prepared"
    meta = json.loads((tmp_path / "exp/adapt_x/adapt.json").read_text())
    assert meta["data"]["replay_utts"] >= 1 and meta["options"]["config"]["replay"] == 0.25
    assert _prepare(tmp_path, d, cfg) == "reused"
    assert _prepare(tmp_path, d, cfg, check_only=True) == "checked"
    cfg.write_text("epochs: 2\nbatch_size: 4\nreplay: 0.25\n")
    with pytest.raises(UserError, match=r"unfinished adaptation with other options \(epochs: 1 -> 2\)"):
        _prepare(tmp_path, d, cfg)
    with pytest.raises(UserError, match=r"(?s)a finished adaptation with other options .*--overwrite true"):
        _prepare(tmp_path, d, cfg, check_only=True)
    cfg.write_text("epochs: 1\nbatch_size: 4\nreplay: 0.25\nnoise_scp: data/noise/wav.scp\n")
    with pytest.raises(UserError, match="noise_scp not found"):
        prepare(model_dir=d, model_file="valid.loss.ave.pth", config_file=cfg, adapt_data=tmp_path / "field",
                replay_data=tmp_path / "train", out_dir=tmp_path / "exp/adapt_y", fs=FS)
    # the reference view: the original config, the adapted weights
    (tmp_path / "exp/adapt_x/valid.loss.ave.pth").write_bytes(b"adapted")
    view = write_reference_view(tmp_path / "exp/adapt_x", d, "valid.loss.ave.pth")
    assert (view / "config.yaml").read_text() == (d / "config.yaml").read_text()
    assert (view / "valid.loss.ave.pth").read_bytes() == b"adapted"


@pytest.mark.slow  # one real ESPnet training epoch in a subprocess: about 30-60 s
def test_freezing_and_noise_in_a_real_training_step(tmp_path):
    """One epoch of ESPnet's trainer on the prepared adaptation: the frozen block is bit-identical to the
    original model, an unfrozen one changed; the noise list is read by ESPnet's preprocessor."""
    d = tiny_model_dir(tmp_path)
    dump_dir(tmp_path / "field", "f", 6, seed=1)
    dump_dir(tmp_path / "train", "t", 6, seed=2)
    _wav(tmp_path / "data/noise/hum.wav", 1.0, 9)
    write_kv(tmp_path / "data/noise/wav.scp", {"hum": str(tmp_path / "data/noise/hum.wav")})
    cfg = tmp_path / "adapt.yaml"
    cfg.write_text(yaml.safe_dump({"epochs": 1, "batch_size": 4, "lr": 0.01, "replay": 0.25, "valid_share": 0.2,
                                   "freeze": ["encoder.encoders.0"], "noise_scp": "data/noise/wav.scp",
                                   "noise_apply_prob": 1.0}))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert _prepare(tmp_path, d, cfg) == "prepared"
    finally:
        os.chdir(cwd)
    out = tmp_path / "exp/adapt_x"
    dd = out / "data"
    cmd = [sys.executable, "-m", "espnet_lw.bin.asr_train", "--config", str(out / "conf/train.yaml"),
           "--output_dir", str(out), "--ngpu", "0",
           "--train_data_path_and_name_and_type", f"{dd}/train/wav.scp,speech,sound",
           "--train_data_path_and_name_and_type", f"{dd}/train/text,text,text",
           "--valid_data_path_and_name_and_type", f"{dd}/valid/wav.scp,speech,sound",
           "--valid_data_path_and_name_and_type", f"{dd}/valid/text,text,text",
           "--train_shape_file", f"{dd}/shape/train/speech_shape",
           "--train_shape_file", f"{dd}/shape/train/text_shape.char",
           "--valid_shape_file", f"{dd}/shape/valid/speech_shape",
           "--valid_shape_file", f"{dd}/shape/valid/text_shape.char"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "noise_scp: data/noise/wav.scp" in (out / "config.yaml").read_text()
    before = torch.load(d / "valid.loss.ave.pth")
    after = torch.load(out / "valid.loss.ave.pth")
    frozen = [k for k in before if k.startswith("encoder.encoders.0.") and before[k].is_floating_point()
              and "running" not in k]
    free = [k for k in before if k.startswith("encoder.encoders.1.") and before[k].is_floating_point()
            and "running" not in k]
    assert frozen and free
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in free)
    assert torch.equal(torch.load(d / "valid.loss.ave.pth")["ctc.ctc_lo.weight"], before["ctc.ctc_lo.weight"])


# ------------------------------------------------------------------------------ the table
def _result(path: Path, err: float) -> None:
    path.mkdir(parents=True, exist_ok=True)
    corr = 100.0 - err
    (path / "result.txt").write_text(
        "|---|\n| SPKR | # Snt # Wrd | Corr Sub Del Ins Err S.Err |\n"
        f"| Sum/Avg | 4 20 | {corr:.1f} {err:.1f} 0.0 0.0 {err:.1f} 50.0 |\n")


def test_report_before_after(tmp_path):
    model, adapt = tmp_path / "exp/asr_m", tmp_path / "exp/adapt_m"
    tag = "decode_ctc_greedy_asr_model_valid.loss.ave"
    for kind in ("wer", "cer"):
        _result(model / tag / "field_test" / f"score_{kind}", 80.0)
        _result(adapt / tag / "field_test" / f"score_{kind}", 40.0)
        _result(adapt / tag / "test" / f"score_{kind}", 10.0)
    text = write_report(model, adapt, tag, ["field_test", "test"], train_seconds=42)
    assert "|field_test|80.0|40.0|-50.0|80.0|40.0|" in text
    assert "|test|-|10.0|-|-|10.0|" in text and "training time: 42 s" in text
    rows = json.loads((adapt / "adapt_results.json").read_text())["rows"]
    assert rows[0]["wer_after"] == 40.0 and rows[1]["wer_before"] is None
