"""Several training processes: the EncRL step and the CTC fine-tune, each for one epoch on 2 CPU processes
(ESPnet's DDP, gloo backend, through ``python -m espnet_lw.bin.asr_train --cpu_procs 2``), then the result
loads and decodes; and the option checks of the entry point (no DataParallel)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_training import train_args, write_ctc_config, write_data, write_encrl_config, write_reference

from espnet_lw.utils.cli import UserError

REPO = Path(__file__).resolve().parents[1]


def _run_train(args, log: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))}
    env.pop("LOCAL_RANK", None)
    with log.open("w") as fh:
        rc = subprocess.run([sys.executable, "-m", "espnet_lw.bin.asr_train", *args], stdout=fh,
                            stderr=subprocess.STDOUT, env=env, timeout=900).returncode
    assert rc == 0, log.read_text()[-4000:]


@pytest.mark.slow
def test_encrl_and_finetune_on_two_cpu_processes(tmp_path):
    import soundfile

    from espnet_lw.inference import build_speech2text, decode_batch, ids_to_text
    from espnet_lw.models.loading import load_state

    ref = write_reference(tmp_path / "ref")
    data = write_data(tmp_path)
    stats = ref[0].parent / "feats_stats.npz"
    procs = ["--ngpu", "0", "--cpu_procs", "2"]

    encrl = tmp_path / "exp" / "encrl"
    _run_train(train_args(tmp_path, write_encrl_config(tmp_path / "encrl.yaml", ref), encrl, procs),
               tmp_path / "encrl.log")
    log = (tmp_path / "encrl.log").read_text()
    assert "0/2]" in log and "unused_parameters=true" in log  # two ranks; DDP told about the unused CTC head
    state = load_state(encrl / "valid.loss.ave.pth")
    assert not any(k.startswith(("reference", "_reference")) for k in state)
    assert (encrl / "checkpoint.pth").is_file() and (encrl / "1epoch.pth").is_file()

    ft = tmp_path / "exp" / "student"
    _run_train(train_args(tmp_path, write_ctc_config(tmp_path / "ft.yaml", stats), ft,
                          procs + ["--init_param", f"{encrl / 'valid.loss.ave.pth'}:::alignment",
                                   "--params_report", str(ft / "params.txt")]),
               tmp_path / "ft.log")
    assert "0/2]" in (tmp_path / "ft.log").read_text()
    ft_state = load_state(ft / "valid.loss.ave.pth")
    assert set(ft_state) == {k for k in state if not k.startswith("alignment.")}
    # --params_report: the parent process writes the model's size once the workers are done, as the
    # standalone model_info tool prints it
    from espnet_lw.bin import model_info

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        model_info.main(["--asr_train_config", str(ft / "config.yaml"),
                         "--asr_model_file", str(ft / "valid.loss.ave.pth")])
    report = (ft / "params.txt").read_text()
    assert report == printed.getvalue() and int(report.split()[0]) > 0 and "encoder blocks: 2" in report

    s2t = build_speech2text(type("A", (), {"asr_train_config": str(ft / "config.yaml"),
                                           "asr_model_file": str(ft / "valid.loss.ave.pth")})(),
                            {"decoding": "greedy", "beam_size": 1}, "cpu")
    x, _ = soundfile.read(data / "u0.flac", dtype="float32")
    ids = decode_batch(s2t, [torch.from_numpy(x)], {"decoding": "greedy", "beam_size": 1})
    assert len(ids) == 1 and isinstance(ids_to_text(s2t, ids[0])[0], str)


def test_data_parallel_and_bad_process_options_are_refused(monkeypatch):
    from espnet_lw.bin import asr_train

    ran = []
    monkeypatch.setattr(asr_train, "_train", lambda cmd: ran.append(cmd))
    monkeypatch.setattr(asr_train, "run_cpu_procs", lambda cmd, n: ran.append(("cpu", n)))
    with pytest.raises(UserError, match="DataParallel"):
        asr_train.main(["--ngpu", "2", "--multiprocessing_distributed", "false"])
    with pytest.raises(UserError, match="--ngpu 0"):
        asr_train.main(["--ngpu", "1", "--cpu_procs", "2"])
    with pytest.raises(UserError, match="cpu_procs must be"):
        asr_train.main(["--cpu_procs", "0"])
    with pytest.raises(UserError, match="--params_report needs --output_dir"):
        asr_train.main(["--params_report", "params.txt"])
    assert not ran
    asr_train.main(["--ngpu", "2", "--output_dir", "x"])  # --ngpu N > 1: DDP, one process per GPU
    assert ran[-1][-2:] == ["--multiprocessing_distributed", "true"]
    asr_train.main(["--ngpu", "0", "--cpu_procs", "2"])
    assert ran[-1] == ("cpu", 2)
    asr_train.main(["--ngpu", "1"])
    assert "--multiprocessing_distributed" not in ran[-1] and "--cpu_procs" not in ran[-1]


def test_trainer_refuses_data_parallel():
    from types import SimpleNamespace

    from espnet_lw.tasks.trainer import LWTrainer

    with pytest.raises(UserError, match="DataParallel"):
        LWTrainer.run(None, [], [], None, None, None, SimpleNamespace(unused_parameters=False),
                      SimpleNamespace(distributed=False, ngpu=2))
