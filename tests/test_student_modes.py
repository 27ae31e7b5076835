"""The research core on tiny models (issue 10): the KD loss and model, the student modes' configs
(scratch / pruned / control / kd / encrl, student.json), the reference-target cache (log-posteriors,
data hash), and proofs that the EncRL loss reads its cached targets and that training lowers it.

Models are the tiny ones of test_encrl_model.py (Conformer d_model 16, 4-block reference, 10 tokens).
The end-to-end runs of every mode through lw.sh are in test_student_modes_recipe.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_encrl_model import ENCODER, _config, _tiny_data_dir, batch, build_student, write_reference

from espnet_lw.losses.config import KDConfig
from espnet_lw.losses.distill import kd_loss
from espnet_lw.tasks.asr import LWASRTask
from espnet_lw.utils.cli import ConfigError, UserError

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
#: the loss the shipped conf/student_r*.yaml use (frame CLIP at 0.1 + MSE on the encoder outputs)
SHIPPED_ALIGNMENT = {"clip": {"weight": 0.1, "level": "frame", "temperature": 0.07, "normalize": True},
                     "mse": {"weight": 1.0, "target": "encoder"}}


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    return write_reference(tmp_path_factory.mktemp("ref"))


def build_ctc(ref, num_blocks=2, **model_conf):
    cfg, _ = ref
    conf = _config(model="lw_ctc", encoder_conf={**ENCODER, "num_blocks": num_blocks},
                   normalize_conf={"stats_file": str(cfg.parent / "feats_stats.npz")}, model_conf=model_conf)
    torch.manual_seed(2)
    return LWASRTask.build_model(argparse.Namespace(**conf))


# ------------------------------------------------------------------------------ the KD loss
def test_kd_loss_zero_for_equal_posteriors_positive_otherwise_with_gradient():
    g = torch.Generator().manual_seed(0)
    r = torch.randn(3, 7, 10, generator=g).log_softmax(-1)
    lens = torch.tensor([7, 5, 2])
    for t in (1.0, 2.0, 4.0):
        assert abs(kd_loss(r.clone(), r, lens, t).item()) < 1e-5
    s = torch.randn(3, 7, 10, generator=g).log_softmax(-1).requires_grad_(True)
    loss = kd_loss(s, r, lens, 2.0)
    assert loss.item() > 0.01
    loss.backward()
    assert s.grad is not None and s.grad[0].abs().sum() > 0
    assert torch.all(s.grad[1, 5:] == 0) and torch.all(s.grad[2, 2:] == 0)  # padding counts for nothing
    # padding frames do not change the value; the reference side gets no gradient
    s2 = s.detach().clone()
    s2[1, 5:] = 0.0
    assert kd_loss(s2, r, lens, 2.0).item() == pytest.approx(loss.item(), rel=1e-6)
    r_grad = r.clone().requires_grad_(True)
    kd_loss(s.detach().clone().requires_grad_(True), r_grad, lens, 2.0).backward()
    assert r_grad.grad is None
    # the T^2 scaling: KL of the softened distributions times T^2 (one frame, by hand)
    one_s, one_r = s.detach()[:1, :1], r[:1, :1]
    p = (one_r / 2).log_softmax(-1)
    q = (one_s / 2).log_softmax(-1)
    expected = 4.0 * (p.exp() * (p - q)).sum()
    assert kd_loss(one_s, one_r, torch.tensor([1]), 2.0).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("conf,match", [
    ({"weight": 1.0, "temprature": 2.0}, r"unknown keys \['temprature'\]"),
    ({"weight": 0}, "kd.weight must be > 0"),
    ({"temperature": -1}, "kd.temperature must be > 0"),
    ({"weight": "high"}, "kd.weight must be a number"),
    ([1, 2], "must be a mapping"),
])
def test_kd_config_is_typed_and_checked(conf, match):
    with pytest.raises(ConfigError, match=match):
        KDConfig.from_dict(conf)


# ------------------------------------------------------------------------------ the KD model
def test_kd_model_loss_gradient_and_refusals(ref):
    model = build_ctc(ref, kd={"weight": 0.5, "temperature": 2.0})
    plain = build_ctc(ref)
    # KD changes training only: the same parameters as a plain lw_ctc student
    assert list(model.state_dict()) == list(plain.state_dict())
    speech, lens, text, tlens = batch()
    model.eval()  # deterministic (no SpecAugment / dropout); the KD term is used whenever ref_logp is given
    with torch.no_grad():
        enc, enc_lens = model.encode(speech, lens)
        own = model.ctc.log_softmax(enc)
    loss, stats, _ = model(speech, lens, text.clone(), tlens, ref_logp=own, ref_logp_lengths=enc_lens)
    assert stats["loss_kd"].item() < 1e-5
    assert loss.item() == pytest.approx(stats["loss_ctc"].item(), rel=1e-5)
    other = torch.randn_like(own).mul(3).log_softmax(-1)
    model.train()
    model.specaug = None
    loss, stats, _ = model(speech, lens, text.clone(), tlens, ref_logp=other, ref_logp_lengths=enc_lens)
    assert stats["loss_kd"].item() > 0.01
    assert loss.item() == pytest.approx((stats["loss_ctc"] + 0.5 * stats["loss_kd"]).item(), rel=1e-4)
    loss.backward()
    assert model.encoder.encoders[0].feed_forward.w_1.weight.grad.abs().sum() > 0
    # training without ref_logp is refused; validation (no cache for the valid set) is plain CTC
    with pytest.raises(UserError, match="no ref_logp"):
        model(speech, lens, text.clone(), tlens)
    model.eval()
    loss_v, stats_v, _ = model(speech, lens, text.clone(), tlens)
    assert "loss_kd" not in stats_v and loss_v.item() == pytest.approx(stats_v["loss_ctc"].item())
    # a cache of the wrong length (another subsampling, other data) and another vocabulary are refused
    with pytest.raises(RuntimeError, match="do not fit the student's frames"):
        model(speech, lens, text.clone(), tlens, ref_logp=other, ref_logp_lengths=enc_lens - 3)
    with pytest.raises(UserError, match="same token list"):
        model(speech, lens, text.clone(), tlens, ref_logp=other[..., :8], ref_logp_lengths=enc_lens)
    # within the tolerance (an utterance cached alone may be a frame shorter): the common frames count
    short = enc_lens.clone()
    short[0] -= 1
    loss_s, _, _ = model(speech, lens, text.clone(), tlens, ref_logp=other, ref_logp_lengths=short)
    assert torch.isfinite(loss_s)
    with pytest.raises(UserError, match="kd.temperature must be > 0"):
        build_ctc(ref, kd={"temperature": 0})


def test_logged_stats_survive_espnets_in_place_loss_division(ref):
    """ESPnet's trainer runs ``loss /= accum_grad`` before it logs the stats (seen on a GPU run with the
    paper config's accum_grad 4: a KD student logged loss = (loss_ctc + loss_kd) / 4). The stats of every
    espnet-lw model keep their values: plain CTC, CTC + KD, and EncRL."""
    speech, lens, text, tlens = batch()
    kd = build_ctc(ref, kd={"weight": 0.5, "temperature": 2.0}).eval()
    with torch.no_grad():
        enc, enc_lens = kd.encode(speech, lens)
    other = torch.randn_like(kd.ctc.log_softmax(enc)).mul(3).log_softmax(-1)
    runs = {
        "ctc": (build_ctc(ref).eval(), {}),
        "kd": (kd, {"ref_logp": other, "ref_logp_lengths": enc_lens}),
        "encrl": (build_student(ref, specaug=False, ctc_weight_in_encrl=0.5).eval(), {}),
    }
    for name, (model, extra) in runs.items():
        loss, stats, _ = model(speech, lens, text.clone(), tlens, **extra)
        logged = {k: v.item() for k, v in stats.items() if k.startswith("loss") and v is not None}
        assert logged["loss"] == pytest.approx(loss.item()), name
        loss /= 4  # what the trainer does with accum_grad 4, before reporter.register(stats)
        assert {k: v.item() for k, v in stats.items() if k.startswith("loss") and v is not None} == logged, name
    assert logged["loss"] == pytest.approx(logged["loss_clip"] + logged["loss_mse"] + 0.5 * logged["loss_ctc"],
                                           rel=1e-5)


def test_kd_student_packs_as_a_stock_ctc_model():
    from espnet_lw.export.pack import stock_config
    from espnet_lw.losses.config import LW_CTC_TRAINING_ONLY_KEYS
    from espnet_lw.models.linear_ctc import TRAINING_ONLY_KEYS

    assert tuple(LW_CTC_TRAINING_ONLY_KEYS) == tuple(TRAINING_ONLY_KEYS)
    conf = {"model": "lw_ctc", "model_conf": {"kd": {"weight": 1.0, "temperature": 2.0}, "kd_length_tolerance": 2}}
    out = stock_config(conf)
    assert out["model"] == "espnet" and out["model_conf"] == {"ctc_weight": 1.0, "report_wer": False}


# ------------------------------------------------------------------------------ EncRL reads its targets
def _shipped_student_and_targets(ref):
    """The shipped EncRL student (eval mode), a batch, and the reference's encoder outputs of it."""
    model = build_student(ref, alignment=SHIPPED_ALIGNMENT, init_from_reference="every_other")
    model.eval()
    speech, lens, text, tlens = batch()
    with torch.no_grad():
        enc, enc_lens = model.reference.encode(speech, lens)
    return model, (speech, lens, text, tlens), enc, enc_lens


def test_perturbed_cached_targets_change_the_encrl_loss(ref):
    model, (speech, lens, text, tlens), enc, enc_lens = _shipped_student_and_targets(ref)
    loss_fly, _, _ = model(speech, lens, text, tlens)
    loss_cached, _, _ = model(speech, lens, text, tlens, ref_enc=enc, ref_enc_lengths=enc_lens)
    assert loss_cached.item() == pytest.approx(loss_fly.item(), rel=1e-6)
    g = torch.Generator().manual_seed(3)
    noisy = enc + 0.5 * torch.randn(enc.shape, generator=g)
    loss_noisy, stats_noisy, _ = model(speech, lens, text, tlens, ref_enc=noisy, ref_enc_lengths=enc_lens)
    assert loss_noisy.item() > loss_cached.item() * 1.05
    # only the targets of one utterance perturbed: the loss still moves (every utterance is read)
    one = enc.clone()
    one[2] += 0.5
    loss_one, _, _ = model(speech, lens, text, tlens, ref_enc=one, ref_enc_lengths=enc_lens)
    assert loss_one.item() != pytest.approx(loss_cached.item(), rel=1e-4)


def test_cache_of_the_wrong_length_is_refused(ref):
    model, (speech, lens, text, tlens), enc, enc_lens = _shipped_student_and_targets(ref)
    with pytest.raises(RuntimeError, match="does not fit this data"):
        model(speech, lens, text, tlens, ref_enc=enc, ref_enc_lengths=enc_lens + 3)
    with pytest.raises(RuntimeError, match="does not fit this data"):
        model(speech, lens, text, tlens, ref_enc=enc[:, :-5], ref_enc_lengths=(enc_lens - 5).clamp(min=1))


def _steps(model, speech, lens, text, tlens, n=12, lr=3e-3):
    """Loss before, and after ``n`` Adam steps on the one batch (eval mode: no dropout, no SpecAugment)."""
    model.eval()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(n + 1):
        opt.zero_grad()
        loss, _, _ = model(speech, lens, text.clone(), tlens)
        losses.append(loss.item())
        loss.backward()
        opt.step()
    return losses[0], losses[-1]


def test_a_few_steps_on_one_batch_lower_the_encrl_and_the_ctc_loss(ref):
    speech, lens, text, tlens = batch()
    encrl = build_student(ref, alignment=SHIPPED_ALIGNMENT, init_from_reference="every_other")
    first, last = _steps(encrl, speech, lens, text, tlens)
    assert last < 0.9 * first, (first, last)
    ctc = build_ctc(ref)
    first, last = _steps(ctc, speech, lens, text, tlens)
    assert last < 0.9 * first, (first, last)


# ------------------------------------------------------------------------------ the cache
def _dump(ref, data, out, *extra):
    from espnet_lw.bin import dump_reference_targets as dump

    cfg, pth = ref
    dump.main(["--reference_config", str(cfg), "--reference_model", str(pth), "--data_dir", str(data),
               "--output_dir", str(out), *extra])


def test_cache_holds_compact_log_posteriors_from_the_same_pass(ref, tmp_path):
    import kaldiio

    from espnet_lw.models.targets import check_reference_cache

    cfg, pth = ref
    data = _tiny_data_dir(tmp_path / "data")
    out = tmp_path / "targets"
    _dump(ref, data, out)  # the default: both targets
    info = yaml.safe_load((out / "info.yaml").read_text())
    assert info["what"] == ["enc", "logp"] and info["data"]["files"].keys() == {"wav.scp", "utt2num_samples"}
    enc = dict(kaldiio.load_scp(str(out / "ref_enc.scp")))
    logp = dict(kaldiio.load_scp(str(out / "ref_logp.scp")))
    from espnet_lw.models.loading import load_reference

    model, _ = load_reference(cfg, pth)
    for k in enc:
        exact = model.ctc.log_softmax(torch.from_numpy(enc[k])[None])[0].numpy()
        assert logp[k].shape == exact.shape
        np.testing.assert_allclose(logp[k], exact, atol=2e-3)
    ark = lambda w: sum(f.stat().st_size for f in (out / "split").glob(f"ref_{w}.*.ark"))  # noqa: E731
    n_frames = sum(v.shape[0] for v in enc.values())
    assert ark("logp") < n_frames * len(logp["u0"][0]) * 4 * 0.6  # about 2 bytes a value, not 4
    check_reference_cache(out, cfg, pth, ["enc", "logp"])


def test_cache_data_hash_refuses_or_rebuilds_changed_data(ref, tmp_path):
    from espnet_lw.models.targets import check_reference_cache

    cfg, pth = ref
    data = _tiny_data_dir(tmp_path / "data")
    (data / "text").write_text("".join(f"u{i} a b\n" for i in range(4)))
    out = tmp_path / "targets"
    _dump(ref, data, out)
    check_reference_cache(out, cfg, pth, ["enc", "logp"])
    # the same path, other contents (the training set re-filtered): refused by the model's check and the dump
    lines = (data / "text").read_text().splitlines(keepends=True)
    (data / "text").write_text("".join(lines[:3]))
    with pytest.raises(UserError, match=r"stale cache: the data changed since it was made \(text of"):
        check_reference_cache(out, cfg, pth)
    with pytest.raises(UserError, match="stale cache"):
        build_student(ref, reference_cache=str(out))
    with pytest.raises(UserError, match="the data changed") as e:
        _dump(ref, data, out)
    assert "--overwrite true" in str(e.value)
    # --overwrite true (what lw.sh passes): the old cache is moved aside and a new one made
    old_hash = yaml.safe_load((out / "info.yaml").read_text())["data"]["sha256"]
    _dump(ref, data, out, "--overwrite", "true")
    assert len(list(tmp_path.glob("targets.old.*"))) == 1
    info = yaml.safe_load((out / "info.yaml").read_text())
    assert info["complete"] and info["data"]["sha256"] != old_hash
    check_reference_cache(out, cfg, pth, ["enc", "logp"])
    # a copy of the same data elsewhere has the same hash (contents, not paths, count)
    from espnet_lw.models.targets import data_fingerprint

    assert data_fingerprint(data)["sha256"] == info["data"]["sha256"]


def test_a_copied_recipe_dir_reuses_its_cache_from_its_own_files(ref, tmp_path, monkeypatch):
    """A recipe dir copied (or moved) elsewhere with its exp/: same data lists -> the cache is kept, its scp
    files re-pointed at the arks beside them (nothing read from the old place, nothing dumped again);
    other lists -> moved aside and dumped again, as before."""
    import shutil

    import kaldiio

    from espnet_lw.models.targets import check_reference_cache

    cfg, pth = ref
    _tiny_data_dir(tmp_path / "a" / "data")
    monkeypatch.chdir(tmp_path / "a")
    _dump(ref, Path("data"), Path("exp/targets"))  # relative paths, as lw.sh passes them
    before = {k: np.array(v) for k, v in kaldiio.load_scp(str(tmp_path / "a/exp/targets/ref_enc.scp")).items()}
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "a" / "exp")  # the old cache is gone (the tiny data's wav.scp names its audio there)
    monkeypatch.chdir(tmp_path / "b")
    stamp = (tmp_path / "b/exp/targets/split/ref_enc.0.ark").stat().st_mtime_ns
    _dump(ref, Path("data"), Path("exp/targets"), "--overwrite", "true")
    assert not list((tmp_path / "b/exp").glob("targets.old.*"))
    assert (tmp_path / "b/exp/targets/split/ref_enc.0.ark").stat().st_mtime_ns == stamp  # not dumped again
    info = yaml.safe_load((tmp_path / "b/exp/targets/info.yaml").read_text())
    assert info["data_dir"] == str((tmp_path / "b/data").resolve())
    assert info["relocated_from"] == str((tmp_path / "a/data").resolve())
    for w in ("enc", "logp"):
        for line in (tmp_path / "b/exp/targets" / f"ref_{w}.scp").read_text().splitlines():
            assert line.split()[1].startswith(str((tmp_path / "b/exp/targets/split").resolve()) + "/")
    after = dict(kaldiio.load_scp(str(tmp_path / "b/exp/targets/ref_enc.scp")))
    assert sorted(after) == sorted(before) and all(np.array_equal(after[k], before[k]) for k in before)
    check_reference_cache("exp/targets", cfg, pth, ["enc", "logp"])
    # a partial copy (its arks missing) is refused, or dumped again with --overwrite true
    shutil.copytree(tmp_path / "b", tmp_path / "d")
    shutil.rmtree(tmp_path / "d/exp/targets/split")
    monkeypatch.chdir(tmp_path / "d")
    with pytest.raises(UserError, match="not beside it"):
        _dump(ref, Path("data"), Path("exp/targets"))
    _dump(ref, Path("data"), Path("exp/targets"), "--overwrite", "true")
    assert len(list((tmp_path / "d/exp").glob("targets.old.*"))) == 1
    check_reference_cache("exp/targets", cfg, pth, ["enc", "logp"])
    # a copy whose data lists differ is not reused
    shutil.copytree(tmp_path / "b", tmp_path / "c")
    monkeypatch.chdir(tmp_path / "c")
    (tmp_path / "c/data/text").write_text("".join(f"u{i} b a\n" for i in range(4)))
    with pytest.raises(UserError, match="another data dir"):
        _dump(ref, Path("data"), Path("exp/targets"))
    _dump(ref, Path("data"), Path("exp/targets"), "--overwrite", "true")
    assert len(list((tmp_path / "c/exp").glob("targets.old.*"))) == 1


def test_old_caches_are_refused_or_rebuilt(ref, tmp_path):
    """Caches from before the log-posteriors and the data hash: KD refuses them, the dump remakes them."""
    from espnet_lw.models.targets import check_reference_cache

    cfg, pth = ref
    data = _tiny_data_dir(tmp_path / "data")
    out = tmp_path / "targets"
    _dump(ref, data, out, "--what", "enc")
    with pytest.raises(UserError, match="no logp targets") as e:
        check_reference_cache(out, cfg, pth, ["logp"])
    assert "hold enc only" in str(e.value)
    check_reference_cache(out, cfg, pth, ["enc"])  # EncRL is served
    with pytest.raises(UserError, match="other targets"):
        _dump(ref, data, out)  # wants enc,logp
    # a cache without a data hash (older espnet-lw)
    info = yaml.safe_load((out / "info.yaml").read_text())
    del info["data"]
    (out / "info.yaml").write_text(yaml.safe_dump(info))
    with pytest.raises(UserError, match="records no hash of its data"):
        check_reference_cache(out, cfg, pth, ["enc"])
    _dump(ref, data, out, "--overwrite", "true")
    info = yaml.safe_load((out / "info.yaml").read_text())
    assert info["what"] == ["enc", "logp"] and "data" in info
    # a complete cache with more targets than asked for serves the request as is
    stamp = (out / "info.yaml").stat().st_mtime_ns
    _dump(ref, data, out, "--what", "enc")
    assert (out / "info.yaml").stat().st_mtime_ns == stamp


# ------------------------------------------------------------------------------ the modes' configs
@pytest.mark.parametrize("ratio", ["50", "67", "83"])
def test_every_mode_of_the_shipped_configs(mini_reference_config, tmp_path, ratio, monkeypatch):
    from espnet_lw.models import student_config
    from espnet_lw.models.student_config import MODES, make_configs

    monkeypatch.setattr(student_config, "check_reference_cache", lambda *a: None)  # "cache": no real one here
    ref_path, ref = mini_reference_config
    student = REPO / "conf" / f"student_r{ratio}.yaml"
    files = {m: make_configs(ref_path, tmp_path / "ref.pth", student, m, "cache" if m in ("encrl", "kd") else None)
             for m in MODES}
    enc, ft = files["encrl"]["encrl.yaml"], files["encrl"]["finetune.yaml"]
    total = enc["max_epoch"] + ft["max_epoch"]
    # every mode trains the EncRL student's total epochs
    for mode, out in files.items():
        assert out["student.json"]["epochs"] == total, mode
        assert out["student.json"]["mode"] == mode
        assert out["student.json"]["ratio"] == {"50": 0.5, "67": 0.667, "83": 0.833}[ratio]
    assert files["scratch"]["scratch.yaml"]["max_epoch"] == total
    assert files["pruned"]["finetune.yaml"]["max_epoch"] == total
    # control and kd: the EncRL student's init, exactly the fine-tune's schedule, no EncRL step
    init = yaml.safe_load(student.read_text())["encrl"]["model_conf"]["init_from_reference"]
    for mode in ("control", "kd"):
        conf = files[mode][f"{mode}.yaml"]
        assert conf["model"] == "lw_ctc" and conf["max_epoch"] == total
        for key in ("scheduler", "scheduler_conf", "optim", "optim_conf", "batch_bins", "specaug_conf"):
            assert conf.get(key) == ft.get(key), (mode, key)
        assert files[mode]["init_blocks.txt"] == init
        assert files[mode]["student.json"]["init"] == init
        assert "encrl.yaml" not in files[mode]
    assert files["kd"]["kd.yaml"]["model_conf"]["kd"] == {"weight": 1.0, "temperature": 2.0}
    assert files["kd"]["student.json"]["kd"] == {"weight": 1.0, "temperature": 2.0}
    # the shipped EncRL student's fine-tune has the kd baseline's term (finetune.kd)
    assert ft["model_conf"]["kd"] == files["kd"]["kd.yaml"]["model_conf"]["kd"]
    assert files["control"]["control.yaml"]["model_conf"] == {}
    # pruned: the paper's blocks (the last ones)
    assert files["pruned"]["blocks.txt"] == "last" and files["pruned"]["student.json"]["init"] == "last"
    assert files["scratch"]["student.json"]["init"] == "random"


def test_modes_defaults_seed_and_student_json(mini_reference_config, tmp_path):
    from espnet_lw.models.student_config import make_configs, write_student_configs

    ref_path, ref = mini_reference_config
    student = tmp_path / "s.yaml"
    student.write_text("num_blocks: 2\nencrl: {max_epoch: 2, model_conf: {init_from_reference: null}}\n"
                       "finetune: {max_epoch: 3, scheduler_conf: {warmup_steps: 7}, optim_conf: {lr: 0.01}}\n"
                       "kd: {temperature: 3.0}\n")
    out = make_configs(ref_path, tmp_path / "ref.pth", student, "control", None, seed=5)
    conf = out["control.yaml"]
    # defaults: total epochs, the fine-tune's keys; a null EncRL init gives a random control
    assert conf["max_epoch"] == 5 and conf["scheduler_conf"] == {"warmup_steps": 7}
    assert conf["optim_conf"] == {"lr": 0.01} and conf["seed"] == 5
    assert "init_blocks.txt" not in out and out["student.json"]["init"] == "random"
    assert out["student.json"]["seed"] == 5 and out["student.json"]["num_blocks"] == 2
    assert out["student.json"]["ratio"] == round(1 - 2 / ref["encoder_conf"]["num_blocks"], 3)
    kd = make_configs(ref_path, tmp_path / "ref.pth", student, "kd", None)["kd.yaml"]
    assert kd["model_conf"]["kd"] == {"weight": 1.0, "temperature": 3.0} and kd["seed"] == ref.get("seed", 0)
    scratch = make_configs(ref_path, tmp_path / "ref.pth", student, "scratch", None)["scratch.yaml"]
    assert scratch["max_epoch"] == 5 and scratch["scheduler_conf"] == ref["scheduler_conf"]
    pruned = make_configs(ref_path, tmp_path / "ref.pth", student, "pruned", None)
    assert pruned["blocks.txt"] == "last"
    # every training config of an encrl student gets the seed
    enc = make_configs(ref_path, tmp_path / "ref.pth", student, "encrl", None, seed=9)
    assert enc["encrl.yaml"]["seed"] == 9 and enc["finetune.yaml"]["seed"] == 9
    assert enc["student.json"]["trainings"] == {"encrl": 2, "finetune": 3}
    # written: student.json is JSON; another seed for a trained student (same dir) is refused
    exp = tmp_path / "exp" / "asr_s_control"
    write_student_configs(ref_path, tmp_path / "ref.pth", student, "control", exp / "conf", trained_dir=exp, seed=5)
    assert json.loads((exp / "conf" / "student.json").read_text())["mode"] == "control"
    (exp / ".done.stage11").touch()
    with pytest.raises(UserError, match="student.json"):
        write_student_configs(ref_path, tmp_path / "ref.pth", student, "control", exp / "conf", trained_dir=exp,
                              seed=6)


def test_kd_configs_refuse_a_cache_without_log_posteriors(ref, tmp_path):
    from espnet_lw.models.student_config import make_configs

    cfg, pth = ref
    data = _tiny_data_dir(tmp_path / "data")
    _dump(ref, data, tmp_path / "old", "--what", "enc")
    student = tmp_path / "s.yaml"
    student.write_text("num_blocks: 2\nencrl: {model_conf: {init_from_reference: every_other}}\n")
    with pytest.raises(UserError, match="no logp targets"):
        make_configs(cfg, pth, student, "kd", str(tmp_path / "old"))
    _dump(ref, data, tmp_path / "new")
    out = make_configs(cfg, pth, student, "kd", str(tmp_path / "new"))
    assert out["init_blocks.txt"] == "every_other"
    # an EncRL student whose fine-tune adds the KD term reads the same cache: checked the same way
    both = tmp_path / "both.yaml"
    both.write_text("num_blocks: 2\nencrl: {model_conf: {init_from_reference: every_other}}\n"
                    "finetune: {kd: {weight: 0.5}}\n")
    with pytest.raises(UserError, match="no logp targets"):
        make_configs(cfg, pth, both, "encrl", str(tmp_path / "old"))
    with pytest.raises(UserError, match="finetune.kd reads the reference's CTC posteriors"):
        make_configs(cfg, pth, both, "encrl", None)
    enc = make_configs(cfg, pth, both, "encrl", str(tmp_path / "new"))
    assert enc["finetune.yaml"]["model_conf"] == {"kd": {"weight": 0.5, "temperature": 2.0}}
    assert "kd" not in enc["encrl.yaml"]["model_conf"] and enc["student.json"]["kd"] == {"weight": 0.5,
                                                                                         "temperature": 2.0}
    # the baselines keep their own losses: the control has no KD term, the kd mode its own section's
    assert make_configs(cfg, pth, both, "control", None)["control.yaml"]["model_conf"] == {}
    assert make_configs(cfg, pth, both, "encrl", str(tmp_path / "new"))["student.json"]["mode"] == "encrl"
