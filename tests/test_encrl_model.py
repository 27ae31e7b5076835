"""EncRL model, reference loading, init_student and the reference-target cache, on tiny models.

Everything is built here with ESPnet's ASRTask from tiny configs (Conformer d_model 16, 4-block
reference, 2-block student, 10 tokens), so the file runs in seconds on one core.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml
from tiny_models import asr_config
from tiny_training import ENCODER, FRONTEND, TOKENS, train_args, write_reference

from espnet_lw.tasks.asr import LWASRTask
from espnet_lw.utils.cli import UserError

torch.set_num_threads(1)

SPECAUG = {"apply_time_warp": False, "freq_mask_width_range": [0, 2], "num_freq_mask": 1,
           "time_mask_width_range": [0, 3], "num_time_mask": 1}

def _config(**over) -> dict:
    """A complete ESPnet ASR config (as training writes it), tiny model, updated with ``over``."""
    return asr_config(TOKENS, FRONTEND, ENCODER, **over)


def build_student(ref, num_blocks=2, alignment=None, specaug=True, **model_conf):
    cfg, pth = ref
    conf = _config(
        model="lw_encrl",
        encoder_conf={**ENCODER, "num_blocks": num_blocks},
        normalize_conf={"stats_file": str(cfg.parent / "feats_stats.npz")},
        specaug="specaug" if specaug else None,
        specaug_conf=SPECAUG,
        model_conf={"reference_config": str(cfg), "reference_model": str(pth),
                    "alignment": alignment or {"clip": {"weight": 1.0}, "mse": {"weight": 1.0, "target": "ctc_logp"}},
                    **model_conf},
    )
    torch.manual_seed(1)
    return LWASRTask.build_model(argparse.Namespace(**conf))


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    speech = torch.randn(3, 4000, generator=g) * 0.1
    lens = torch.tensor([4000, 3000, 2200])
    speech[1, 3000:] = 0
    speech[2, 2200:] = 0
    text = torch.tensor([[2, 3, 4], [5, 6, -1], [7, -1, -1]])
    return speech, lens, text, torch.tensor([3, 2, 1])


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    return write_reference(tmp_path_factory.mktemp("ref"))


def test_reference_is_outside_the_state_dict_and_parameters(ref):
    model = build_student(ref)
    keys = list(model.state_dict())
    assert not any(k.startswith(("reference", "_reference")) for k in keys)
    assert len([k for k in keys if k.startswith("encoder.encoders.")]) > 0
    assert {k.split(".")[2] for k in keys if k.startswith("encoder.encoders.")} == {"0", "1"}
    ref_params = {id(p) for p in model.reference.parameters()}
    assert not ref_params & {id(p) for p in model.parameters()}
    assert len(model.reference.encoder.encoders) == 4
    assert all(not p.requires_grad for p in model.reference.parameters())
    # model.to(...) (what the trainer does) carries the unregistered reference along
    model.to(torch.float64)
    assert next(model.reference.parameters()).dtype == torch.float64
    assert all(not p.requires_grad for p in model.reference.parameters())


def test_reference_stays_in_eval_mode(ref):
    model = build_student(ref)
    model.train()
    assert model.training and model.encoder.training and model.specaug.training
    assert not model.reference.training
    assert not any(m.training for m in model.reference.modules())
    model.eval()
    model.train(True)
    assert not model.reference.training


def test_gradients_reach_the_student_only(ref):
    model = build_student(ref)
    model.train()
    before_ref = {k: v.clone() for k, v in model.reference.state_dict().items()}
    before_stu = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loss, stats, weight = model(*batch())
    assert loss.requires_grad and int(weight) == 3
    assert {"loss", "loss_clip", "loss_mse", "loss_mse_logp", "temperature"} <= set(stats)
    loss.backward()
    opt.step()
    assert all(p.grad is None for p in model.reference.parameters())
    for k, v in model.reference.state_dict().items():
        # (ESPnet's GlobalMVN casts its float64 mean/std buffers to the input dtype on first use)
        assert torch.equal(v, before_ref[k].to(v.dtype)), k
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before_stu[k])]
    assert any(k.startswith("encoder.encoders.") for k in changed)
    assert any(k.startswith("ctc.ctc_lo") for k in changed)  # trained through the ctc_logp MSE


def test_cached_targets_equal_on_the_fly(ref):
    model = build_student(ref, alignment={"clip": {"level": "frame"}, "mse": {"target": "both"}})
    model.eval()  # no SpecAugment / dropout: deterministic
    speech, lens, text, tlens = batch()
    loss, stats, _ = model(speech, lens, text, tlens)
    with torch.no_grad():
        enc, enc_lens = model.reference.encode(speech, lens)
        logp = model.reference.ctc.log_softmax(enc)
    loss_enc, _, _ = model(speech, lens, text, tlens, ref_enc=enc, ref_enc_lengths=enc_lens)
    loss_both, _, _ = model(speech, lens, text, tlens, ref_enc=enc, ref_enc_lengths=enc_lens,
                            ref_logp=logp, ref_logp_lengths=enc_lens)
    assert loss_enc.item() == pytest.approx(loss.item(), rel=1e-6)
    assert loss_both.item() == pytest.approx(loss.item(), rel=1e-6)
    # cached utterances computed alone may be a frame shorter than in a padded batch: the common
    # frames are compared; a larger difference means the cache belongs to other data
    short = enc_lens.clone()
    short[1] -= 1
    loss_short, _, _ = model(speech, lens, text, tlens, ref_enc=enc, ref_enc_lengths=short)
    assert torch.isfinite(loss_short) and loss_short.item() != loss.item()
    with pytest.raises(RuntimeError, match="does not fit this data"):
        model(speech, lens, text, tlens, ref_enc=enc, ref_enc_lengths=enc_lens - 3)


def test_intermediate_blocks_term_pairs_each_block_with_its_init_block(ref):
    """alignment.layers: student block k (but the last) against the reference block it started from
    (every_other, 4 -> 2 blocks: student 0 <- reference 1); the reference runs even when a cache is given."""
    from espnet_lw.losses.alignment import layers_loss
    from espnet_lw.models.blocks import block_outputs

    model = build_student(ref, specaug=False, init_from_reference="every_other",
                          alignment={"mse": {"target": "encoder"}, "layers": {"weight": 1.0}})
    assert model.init_blocks == [1, 3] and model.layer_pairs == [(0, 1)]
    model.eval()
    speech, lens, text, tlens = batch()
    loss, stats, _ = model(speech, lens, text, tlens)
    with torch.no_grad():
        with block_outputs(model.encoder, [0]) as s_out:
            enc, enc_lens = model.encode(speech, lens)
        with block_outputs(model.reference.encoder, [1]) as r_out:
            r_enc, _ = model.reference.encode(speech, lens)
    expected = layers_loss([s_out[0]], [r_out[1]], enc_lens)
    assert stats["loss_layers"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss.item() == pytest.approx(stats["loss_mse"].item() + expected.item(), rel=1e-5)
    assert stats["loss_layers"].item() > 0
    # a cache would only give the output: it is not read (a perturbed one changes nothing)
    loss_c, _, _ = model(speech, lens, text, tlens, ref_enc=r_enc + 5.0, ref_enc_lengths=enc_lens)
    assert loss_c.item() == pytest.approx(loss.item(), rel=1e-6)
    # the term's gradient reaches the paired student block; no hook is left behind
    model.train()
    model.alignment.mse_conf = None  # the layers term alone
    loss_l, _, _ = model(speech, lens, text, tlens)
    loss_l.backward()
    assert model.encoder.encoders[0].feed_forward.w_1.weight.grad.abs().sum() > 0
    assert model.encoder.encoders[1].feed_forward.w_1.weight.grad is None
    assert not model.encoder.encoders[0]._forward_hooks and not model.reference.encoder.encoders[1]._forward_hooks
    with pytest.raises(UserError, match="needs model_conf.init_from_reference"):
        build_student(ref, alignment={"layers": {}})
    with pytest.raises(UserError, match="at least 2 blocks"):
        build_student(ref, num_blocks=1, init_from_reference="last", alignment={"layers": {}})


def test_ctc_weight_in_encrl_adds_the_ctc_loss(ref):
    model = build_student(ref, specaug=False, ctc_weight_in_encrl=0.5)
    model.eval()
    loss, stats, _ = model(*batch())
    assert "loss_ctc" in stats
    expected = stats["loss_clip"] + stats["loss_mse"] + 0.5 * stats["loss_ctc"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_init_from_reference_copies_the_chosen_blocks(ref):
    model = build_student(ref, init_from_reference="every_other")
    assert model.init_blocks == [1, 3]
    r = model.reference.state_dict()
    s = model.state_dict()
    for j, i in enumerate([1, 3]):
        block = [k for k in r if k.startswith(f"encoder.encoders.{i}.")]
        assert block
        for k in block:
            assert torch.equal(s[k.replace(f"encoders.{i}.", f"encoders.{j}.", 1)], r[k]), k
    for k in r:
        if k.startswith(("encoder.embed.", "encoder.after_norm.", "ctc.ctc_lo.", "normalize.")):
            assert torch.equal(s[k], r[k]), k
    explicit = build_student(ref, init_from_reference=[0, 2])
    assert explicit.init_blocks == [0, 2]
    assert torch.equal(explicit.state_dict()["encoder.encoders.1.feed_forward.w_1.weight"],
                       r["encoder.encoders.2.feed_forward.w_1.weight"])


def test_init_student_cli(ref, tmp_path):
    from espnet2.torch_utils.load_pretrained_model import load_pretrained_model

    from espnet_lw.bin import init_student

    cfg, pth = ref
    student_cfg = tmp_path / "student.yaml"
    student_cfg.write_text(yaml.safe_dump({"encoder": "conformer", "encoder_conf": {**ENCODER, "num_blocks": 2}}))
    out = tmp_path / "init.pth"
    init_student.main(["--reference_config", str(cfg), "--reference_model", str(pth),
                       "--student_config", str(student_cfg), "--blocks", "last", "--out", str(out)])
    state = torch.load(out)
    r = torch.load(pth)
    assert torch.equal(state["encoder.encoders.0.conv_module.pointwise_conv1.weight"],
                       r["encoder.encoders.2.conv_module.pointwise_conv1.weight"])
    assert torch.equal(state["encoder.encoders.1.norm_ff.weight"], r["encoder.encoders.3.norm_ff.weight"])
    assert {k.split(".")[2] for k in state if k.startswith("encoder.encoders.")} == {"0", "1"}
    assert torch.equal(state["ctc.ctc_lo.weight"], r["ctc.ctc_lo.weight"])
    assert "normalize.mean" in state and not any(k.startswith("frontend.") for k in state)
    # ESPnet's --init_param path takes it as is
    model = build_student(ref)
    load_pretrained_model(str(out), model, ignore_init_mismatch=False)
    assert torch.equal(model.state_dict()["encoder.encoders.1.norm_ff.weight"], r["encoder.encoders.3.norm_ff.weight"])
    # a student of another width is refused with the student config's name
    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text(yaml.safe_dump({"encoder": "conformer",
                                       "encoder_conf": {**ENCODER, "num_blocks": 2, "linear_units": 24}}))
    with pytest.raises(UserError, match="bad.yaml"):
        init_student.main(["--reference_config", str(cfg), "--reference_model", str(pth),
                           "--student_config", str(bad_cfg), "--blocks", "first", "--out", str(out)])


def test_mismatched_reference_is_refused(ref, tmp_path):
    cfg, pth = ref
    # token lists differ while the loss compares CTC log-posteriors
    other = write_reference(tmp_path / "vocab", token_list=TOKENS[:-2] + ["h", "<sos/eos>"])
    with pytest.raises(UserError, match=r"token list.*differs") as e:
        build_student(other, alignment={"mse": {"target": "ctc_logp"}})
    assert str(other[0]) in str(e.value)
    # other frame rate
    hop = write_reference(tmp_path / "hop", frontend_conf={**FRONTEND, "hop_length": 32})
    with pytest.raises(UserError, match="hop_length"):
        build_student(hop)
    # checkpoint of another model than its config: 2 blocks in the .pth, 4 in the config
    small = write_reference(tmp_path / "small", encoder_conf={**ENCODER, "num_blocks": 2})
    with pytest.raises(UserError, match="missing keys") as e:
        build_student((cfg, small[1]))
    assert str(small[1]) in str(e.value)
    wide = write_reference(tmp_path / "wide", encoder_conf={**ENCODER, "linear_units": 24})
    with pytest.raises(UserError, match="other shapes"):
        build_student((cfg, wide[1]))
    with pytest.raises(UserError, match="not found"):
        build_student((cfg, tmp_path / "nope.pth"))


def test_relative_stats_file_is_not_needed(ref, tmp_path):
    """A reference config whose stats path does not resolve still loads (MVN comes from the .pth)."""
    from espnet_lw.models.loading import load_reference

    cfg, pth = ref
    conf = yaml.safe_load(cfg.read_text())
    conf["normalize_conf"] = {"stats_file": "exp/asr_stats_raw_bpe256/train/feats_stats.npz"}
    moved = tmp_path / "config.yaml"
    moved.write_text(yaml.safe_dump(conf))
    model, _ = load_reference(moved, pth)
    torch.testing.assert_close(model.normalize.mean, torch.load(pth)["normalize.mean"])


def _tiny_data_dir(d: Path, n: int = 4) -> Path:
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with (d / "wav.scp").open("w") as wav, (d / "utt2num_samples").open("w") as num:
        for i in range(n):
            x = (rng.normal(size=1600 + 700 * i) * 0.1).astype(np.float32)
            soundfile.write(d / f"u{i}.flac", x, 16000, subtype="PCM_16")
            wav.write(f"u{i} {d / f'u{i}.flac'}\n")
            num.write(f"u{i} {len(x)}\n")
    return d


def test_dump_reference_targets(ref, tmp_path):
    import kaldiio

    from espnet_lw.bin import dump_reference_targets as dump
    from espnet_lw.models.loading import load_reference
    from espnet_lw.models.targets import check_reference_cache

    cfg, pth = ref
    data = _tiny_data_dir(tmp_path / "data")
    out = tmp_path / "targets"
    argv = ["--reference_config", str(cfg), "--reference_model", str(pth), "--data_dir", str(data),
            "--output_dir", str(out), "--what", "enc,logp"]
    dump.main(argv)
    info = yaml.safe_load((out / "info.yaml").read_text())
    assert info["complete"] and info["this_run"]["utterances"] == 4
    enc = dict(kaldiio.load_scp(str(out / "ref_enc.scp")))
    logp = dict(kaldiio.load_scp(str(out / "ref_logp.scp")))
    assert sorted(enc) == ["u0", "u1", "u2", "u3"]
    model, _ = load_reference(cfg, pth)
    x, _ = soundfile.read(data / "u3.flac", dtype="float32")
    with torch.no_grad():
        e, el = model.encode(torch.from_numpy(x)[None], torch.tensor([len(x)]))
    np.testing.assert_allclose(enc["u3"], e[0].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(logp["u3"], model.ctc.log_softmax(e)[0].numpy(), rtol=1e-4, atol=1e-5)
    check_reference_cache(out, cfg, pth, ["enc", "logp"])

    # a finished cache is left alone
    mtime = (out / "ref_enc.scp").stat().st_mtime_ns
    dump.main(argv)
    assert (out / "ref_enc.scp").stat().st_mtime_ns == mtime

    # resume after a crash: a torn scp line and a missing utterance are redone
    scp = out / "split" / "ref_enc.0.scp"
    lines = scp.read_text().splitlines(keepends=True)
    scp.write_text("".join(lines[:2]) + lines[2][:5])
    info["complete"] = False
    (out / "info.yaml").write_text(yaml.safe_dump(info))
    dump.main(argv)
    again = dict(kaldiio.load_scp(str(out / "ref_enc.scp")))
    assert sorted(again) == sorted(enc)
    for k in enc:
        np.testing.assert_array_equal(again[k], enc[k])

    # another reference: the dump refuses, and so does the model's cache check
    other = write_reference(tmp_path / "other", seed=5)
    with pytest.raises(UserError, match="another reference model"):
        dump.main(["--reference_config", str(other[0]), "--reference_model", str(other[1]), "--data_dir",
                   str(data), "--output_dir", str(out), "--what", "enc,logp"])
    with pytest.raises(UserError, match="stale cache"):
        check_reference_cache(out, other[0], other[1])
    with pytest.raises(UserError, match="stale cache"):
        build_student(other, reference_cache=str(out))
    build_student(ref, reference_cache=str(out))  # the right one is accepted


def test_espnet_trainer_with_cached_targets(ref, tmp_path):
    """Two epochs of ESPnet's own trainer: cached ref_enc read as optional data, student-only checkpoints,
    and the checkpoint starts an lw_ctc fine-tune through --init_param <pth>:::alignment."""
    from espnet2.torch_utils.load_pretrained_model import load_pretrained_model

    from espnet_lw.bin import dump_reference_targets as dump

    cfg, pth = ref
    data = _tiny_data_dir(tmp_path / "data", n=6)
    (data / "text").write_text("".join(f"u{i} a b c\n" for i in range(6)))
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("\n".join(TOKENS) + "\n")
    (tmp_path / "speech_shape").write_text("".join(f"u{i} {1600 + 700 * i}\n" for i in range(6)))
    (tmp_path / "text_shape").write_text("".join(f"u{i} 3,10\n" for i in range(6)))
    cache = tmp_path / "cache"
    dump.main(["--reference_config", str(cfg), "--reference_model", str(pth), "--data_dir", str(data),
               "--output_dir", str(cache)])
    alignment = {"clip": {"learnable_temperature": True, "projection": True, "proj_dim": 8},
                 "mse": {"target": "ctc_logp"}}
    conf = {
        "frontend": "default", "frontend_conf": FRONTEND, "specaug": "specaug", "specaug_conf": SPECAUG,
        "normalize": "global_mvn", "normalize_conf": {"stats_file": str(cfg.parent / "feats_stats.npz")},
        "encoder": "conformer", "encoder_conf": {**ENCODER, "num_blocks": 2}, "decoder": "none",
        "model": "lw_encrl",
        "model_conf": {"reference_config": str(cfg), "reference_model": str(pth), "reference_cache": str(cache),
                       "alignment": alignment, "init_from_reference": "first"},
        "optim": "adam", "optim_conf": {"lr": 0.001}, "batch_type": "folded", "batch_size": 3, "max_epoch": 2,
        "num_workers": 0, "best_model_criterion": [["valid", "loss", "min"]], "use_tensorboard": False,
        "num_att_plot": 0, "seed": 0,
    }
    (tmp_path / "encrl.yaml").write_text(yaml.safe_dump(conf))
    exp = tmp_path / "exp"
    # (tiny_training's layout: data/, tokens.txt and the shape files in tmp_path)
    LWASRTask.main(cmd=train_args(tmp_path, tmp_path / "encrl.yaml", exp, [
        "--ngpu", "0", "--train_data_path_and_name_and_type", f"{cache}/ref_enc.scp,ref_enc,kaldi_ark"]))
    state = torch.load(exp / "2epoch.pth")
    assert {k.split(".")[2] for k in state if k.startswith("encoder.encoders.")} == {"0", "1"}
    assert "alignment.temperature.log_scale" in state and "alignment.proj_student.weight" in state
    assert not any(k.startswith(("reference", "_reference")) for k in state)
    # the fine-tune model (lw_ctc, same student) takes everything but the loss's own parameters
    ft_conf = _config(model="lw_ctc", encoder_conf={**ENCODER, "num_blocks": 2},
                      normalize_conf={"stats_file": str(cfg.parent / "feats_stats.npz")}, model_conf={})
    ft = LWASRTask.build_model(argparse.Namespace(**ft_conf))
    load_pretrained_model(f"{exp / 'valid.loss.ave.pth'}:::alignment", ft, ignore_init_mismatch=False)
    assert torch.equal(ft.state_dict()["ctc.ctc_lo.weight"],
                       torch.load(exp / "valid.loss.ave.pth")["ctc.ctc_lo.weight"])


def test_reference_targets_are_readable_from_another_directory(ref, tmp_path, monkeypatch):
    """A cache dumped with relative paths (as lw.sh does) serves students run from elsewhere (--ref_exp)."""
    import kaldiio

    from espnet_lw.bin import dump_reference_targets as dump

    cfg, pth = ref
    _tiny_data_dir(tmp_path / "recipe" / "data")
    monkeypatch.chdir(tmp_path / "recipe")
    dump.main(["--reference_config", str(cfg), "--reference_model", str(pth), "--data_dir", "data",
               "--output_dir", "exp/targets"])
    for line in (tmp_path / "recipe" / "exp" / "targets" / "ref_enc.scp").read_text().splitlines():
        assert Path(line.split(maxsplit=1)[1].rpartition(":")[0]).is_absolute()
    monkeypatch.chdir(tmp_path)  # another recipe dir
    enc = dict(kaldiio.load_scp(str(tmp_path / "recipe" / "exp" / "targets" / "ref_enc.scp")))
    assert sorted(enc) == ["u0", "u1", "u2", "u3"] and all(v.ndim == 2 for v in enc.values())


def test_default_alignment_and_config_errors(ref):
    """Without model_conf.alignment: CLIP + MSE on the encoder outputs (losses.config's one default);
    a bad alignment or a CTC weight is a UserError naming the setting."""
    from espnet_lw.losses.config import AlignmentConfig

    cfg, pth = ref

    def conf(**model_conf):
        return argparse.Namespace(**_config(
            model="lw_encrl", encoder_conf={**ENCODER, "num_blocks": 2},
            normalize_conf={"stats_file": str(cfg.parent / "feats_stats.npz")},
            model_conf={"reference_config": str(cfg), "reference_model": str(pth), **model_conf}))

    model = LWASRTask.build_model(conf())
    assert model.alignment.config == AlignmentConfig.default()
    assert model.alignment.mse_conf.target == "encoder" and not model.alignment.needs_logp
    with pytest.raises(UserError, match=r"model_conf.alignment.clip: unknown keys \['temprature'\]"):
        LWASRTask.build_model(conf(alignment={"clip": {"temprature": 0.1}}))
    with pytest.raises(UserError, match="ctc_weight_in_encrl, not ctc_weight"):
        LWASRTask.build_model(conf(ctc_weight=0.3))
    with pytest.raises(UserError, match="init_from_reference: blocks must be"):
        LWASRTask.build_model(conf(init_from_reference="middle"))
    ctc = _config(model="lw_ctc", normalize_conf={"stats_file": str(cfg.parent / "feats_stats.npz")},
                  model_conf={"ctc_weight": 0.5})
    with pytest.raises(UserError, match="model 'lw_ctc' is CTC-only"):
        LWASRTask.build_model(argparse.Namespace(**ctc))


def test_lw_ctc_reference_loads_with_espnets_own_task(tmp_path, monkeypatch):
    """models.loading builds references with ESPnet's stock ASRTask and registers lw_ctc itself."""
    from espnet2.tasks.asr import model_choices

    from espnet_lw.models.linear_ctc import LinearCTCModel
    from espnet_lw.models.loading import load_reference

    cfg, pth = write_reference(tmp_path / "ctc", model="lw_ctc", model_conf={})
    monkeypatch.delitem(model_choices.classes, "lw_ctc")
    model, args = load_reference(cfg, pth)
    assert isinstance(model, LinearCTCModel) and args.model == "lw_ctc"
    assert model_choices.classes["lw_ctc"] is LinearCTCModel
