"""Model files: a pickled object that would run code is refused (weights_only loading), ESPnet's own
model files load; training checkpoints are written atomically (a save that fails half-way leaves the
previous checkpoint loadable, and training resumes from it)."""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np
import pytest
import torch
import yaml
from tiny_training import train_args, write_ctc_config, write_data, write_reference

from espnet_lw.utils.checkpoints import atomic_torch_save, atomic_torch_saves, safe_torch_load
from espnet_lw.utils.cli import UserError

torch.set_num_threads(1)


class _RunsCode:
    """Unpickling this runs a shell command (what a malicious 'model' does)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _malicious(path, marker):
    torch.save({"encoder.weight": torch.zeros(2), "payload": _RunsCode(marker)}, path)
    return path


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    bad = _malicious(tmp_path / "model.pth", marker)
    with pytest.raises(UserError) as e:
        safe_torch_load(bad)
    assert str(bad) in str(e.value) and "refused" in str(e.value) and "fix:" in str(e.value)
    assert "system" in str(e.value)  # names what the file asked for
    assert not marker.exists()


def test_reference_loader_refuses_a_malicious_model(tmp_path):
    """The path a downloaded model takes (import_reference, EncRL, the target dump): load_reference."""
    from espnet_lw.models.loading import load_reference, load_state

    cfg, _ = write_reference(tmp_path / "ref")
    marker = tmp_path / "pwned"
    bad = _malicious(tmp_path / "ref" / "evil.pth", marker)
    for call in (lambda: load_state(bad), lambda: load_reference(cfg, bad)):
        with pytest.raises(UserError, match="refused to load"):
            call()
    assert not marker.exists()


def test_real_espnet_model_file_loads(tmp_path):
    """A tiny ESPnet model (state dict saved as ESPnet's trainer does) loads through the safe path,
    also with numpy arrays / scalars in it and in a DeepSpeed-style {"module": ...} wrapper."""
    from espnet_lw.models.loading import load_reference, load_state

    cfg, pth = write_reference(tmp_path / "ref")
    model, _ = load_reference(cfg, pth)
    assert not any(p.requires_grad for p in model.parameters())
    state = load_state(pth)
    assert set(state) == set(torch.load(pth, weights_only=False))
    extra = OrderedDict(state)
    torch.save({"module": extra, "stats": np.arange(3.0), "count": np.float64(2.0), "n": np.int64(3)},
               tmp_path / "ds.pth")
    assert set(load_state(tmp_path / "ds.pth")) == set(state)


def test_unreadable_model_file_is_a_user_error(tmp_path):
    (tmp_path / "torn.pth").write_bytes(b"PK\x03\x04 not a whole file")
    with pytest.raises(UserError, match="cannot read"):
        safe_torch_load(tmp_path / "torn.pth")
    with pytest.raises(UserError, match="not found"):
        safe_torch_load(tmp_path / "missing.pth")


# ------------------------------------------------------------------------------ atomic saves
def _half_then_fail(obj, f, *args, **kwargs):
    """A torch.save that dies half-way (a full disk, a kill): some bytes written, then an error."""
    f.write(b"PK\x03\x04" + b"\0" * 100)
    raise OSError(28, "No space left on device")


def test_interrupted_atomic_save_keeps_the_previous_file(tmp_path):
    path = tmp_path / "checkpoint.pth"
    atomic_torch_save({"w": torch.ones(3)}, path)
    with pytest.raises(OSError, match="No space"):
        atomic_torch_save({"w": torch.zeros(3)}, path, _save=_half_then_fail)
    assert torch.equal(torch.load(path)["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth"]  # no temporary file left
    atomic_torch_save({"w": torch.zeros(3)}, path)
    assert torch.equal(torch.load(path)["w"], torch.zeros(3))


def test_atomic_saves_are_scoped_to_the_given_modules(tmp_path):
    import types

    mod = types.ModuleType("fake_trainer")
    mod.torch = torch
    exec("def save(obj, path):\n    torch.save(obj, path)\n", mod.__dict__)
    with atomic_torch_saves([mod]):
        assert mod.torch is not torch and mod.torch.nn is torch.nn and mod.torch.save is not torch.save
        mod.save({"a": 1}, tmp_path / "x.pth")
    assert mod.torch is torch  # restored
    assert torch.load(tmp_path / "x.pth") == {"a": 1}


def test_trainer_checkpoint_survives_a_save_that_fails_half_way(tmp_path, monkeypatch):
    """ESPnet's trainer (via LWASRTask) trains epoch 1; epoch 2's checkpoint save fails half-way:
    checkpoint.pth is still epoch 1's, whole and loadable, and a re-run resumes from it to epoch 2."""
    from espnet_lw.bin.asr_train import main as train

    ref_cfg, _ = write_reference(tmp_path / "ref")
    write_data(tmp_path)
    stats = ref_cfg.parent / "feats_stats.npz"
    out = tmp_path / "exp"
    argv = train_args(tmp_path, write_ctc_config(tmp_path / "ctc.yaml", stats, max_epoch=2), out, ["--ngpu", "0"])
    real_save = torch.save
    calls = {"n": 0}

    def failing_after_epoch_1(obj, f, *args, **kwargs):
        is_checkpoint = isinstance(obj, dict) and "optimizers" in obj
        if is_checkpoint:
            calls["n"] += 1
            if calls["n"] == 2:
                return _half_then_fail(obj, f)
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_after_epoch_1)
    with pytest.raises(OSError, match="No space"):
        train(argv)
    monkeypatch.setattr(torch, "save", real_save)
    ckpt = torch.load(out / "checkpoint.pth", weights_only=False)
    assert ckpt["reporter"]["epoch"] == 1
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    train(argv)  # resumes from epoch 1
    assert torch.load(out / "checkpoint.pth", weights_only=False)["reporter"]["epoch"] == 2
    assert (out / "valid.loss.ave.pth").is_file()
    log = yaml.safe_load((out / "config.yaml").read_text())
    assert log["max_epoch"] == 2


def test_training_checkpoint_is_refused_as_a_model_file(tmp_path):
    """A real checkpoint.pth (model + optimizer + reporter) loads safely and gets the usual message."""
    from espnet_lw.bin.asr_train import main as train
    from espnet_lw.models.loading import load_state

    ref_cfg, _ = write_reference(tmp_path / "ref")
    write_data(tmp_path)
    out = tmp_path / "exp"
    train(train_args(tmp_path, write_ctc_config(tmp_path / "ctc.yaml", ref_cfg.parent / "feats_stats.npz"), out,
                     ["--ngpu", "0"]))
    with pytest.raises(UserError, match="training checkpoint"):
        load_state(out / "checkpoint.pth")
    assert "ctc.ctc_lo.weight" in load_state(out / "valid.loss.ave.pth")


def test_decoding_refuses_a_malicious_model_file(tmp_path):
    """ESPnet's Speech2Text (stage 12, pack, export) loads with weights_only=False: espnet-lw makes it safe."""
    from types import SimpleNamespace

    from espnet_lw.inference import build_speech2text

    cfg, pth = write_reference(tmp_path / "ref")
    marker = tmp_path / "pwned"
    bad = _malicious(tmp_path / "ref" / "evil.pth", marker)
    with pytest.raises(UserError, match="refused to load"):
        build_speech2text(SimpleNamespace(asr_train_config=str(cfg), asr_model_file=str(bad)), {}, "cpu")
    assert not marker.exists()
    s2t = build_speech2text(SimpleNamespace(asr_train_config=str(cfg), asr_model_file=str(pth)), {}, "cpu")
    assert s2t.asr_model is not None
    import espnet2.tasks.abs_task as abs_task

    assert abs_task.torch is torch  # the safe loader was scoped to the call
