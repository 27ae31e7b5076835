"""The GPU check's recipe copy (egs2/mini_synth/lw1/local/gpu_check_prepare.py) on a fake finished recipe:
long utterances joined per speaker, the repeated training list, dev, the shortened student config, and
the refusals. The check itself (local/gpu_check.sh) needs a GPU: here only its --help and its refusal to
run outside such a copy."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2" / "mini_synth" / "lw1"
PREPARE = RECIPE / "local" / "gpu_check_prepare.py"
CHECK = RECIPE / "local" / "gpu_check.sh"


def _fake_recipe(d: Path) -> Path:
    """dump/raw/{train,dev} (FLAC clips of 0.25 s .. 0.45 s) and data/token_list of a 'finished' recipe."""
    for split, spks, per in (("train", ("spkA", "spkB"), 5), ("dev", ("spkC",), 3)):
        sd = d / "dump" / "raw" / split
        (sd / "data").mkdir(parents=True)
        wav, text, u2s = [], [], []
        for spk in spks:
            for i in range(per):
                utt = f"{spk}-{i:04d}"
                n = 4000 + 800 * i
                sf.write(sd / "data" / f"{utt}.flac", (0.1 * np.sin(np.arange(n) * 0.05)).astype(np.float32), 16000)
                wav.append(f"{utt} dump/raw/{split}/data/{utt}.flac")
                text.append(f"{utt} WORD{i} OF {spk.upper()}")
                u2s.append(f"{utt} {spk}")
        for name, lines in (("wav.scp", wav), ("text", text), ("utt2spk", u2s)):
            (sd / name).write_text("\n".join(lines) + "\n")
    (d / "data" / "token_list" / "char").mkdir(parents=True)
    (d / "data" / "token_list" / "char" / "tokens.txt").write_text("<blank>\n<unk>\nA\n<sos/eos>\n")
    return d


def _prepare(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PREPARE), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def _lines(p: Path) -> list:
    return p.read_text().splitlines()


def test_prepare_joins_clips_repeats_the_list_and_shortens_the_student(tmp_path):
    if shutil.which("sox") is None or shutil.which("soxi") is None:
        pytest.skip("needs sox")
    src = _fake_recipe(tmp_path / "src")
    out = tmp_path / "gpu"
    r = _prepare("--src", str(src), "--out", str(out), "--repeat", "3", "--clips", "4", "--dev_utts", "2", cwd=src)
    assert r.returncode == 0, r.stderr
    assert "long_utts=2" in r.stdout and "train_rows=6" in r.stdout and "dev_utts=2" in r.stdout
    train = out / "dump" / "raw" / "train"
    wav = _lines(train / "wav.scp")
    assert [w.split()[0] for w in wav] == sorted(w.split()[0] for w in wav)
    assert {w.split()[0] for w in wav} == {f"r{k}-{s}-L000" for k in range(3) for s in ("spkA", "spkB")}
    # one long utterance = the first 4 clips of its speaker, audio and text
    samples = dict(line.split() for line in _lines(train / "utt2num_samples"))
    assert samples["r0-spkA-L000"] == str(sum(4000 + 800 * i for i in range(4)))
    text = dict(line.split(" ", 1) for line in _lines(train / "text"))
    assert text["r2-spkB-L000"] == "WORD0 OF SPKB WORD1 OF SPKB WORD2 OF SPKB WORD3 OF SPKB"
    path = dict(line.split() for line in wav)["r1-spkA-L000"]
    assert sf.info(out / path).frames == int(samples["r0-spkA-L000"])
    assert _lines(train / "utt2spk")[0].split() == ["r0-spkA-L000", "r0-spkA"]
    assert (train / "audio_format").read_text().strip() == "flac"
    assert len(_lines(out / "dump" / "raw" / "dev" / "wav.scp")) == 2
    for d in ("dump/raw/train", "dump/raw/dev", "data/train", "data/dev"):
        v = subprocess.run([sys.executable, "-m", "espnet_lw.bin.validate_data_dir", d], cwd=out,
                           capture_output=True, text=True, timeout=60)
        assert v.returncode == 0, (d, v.stderr)
    # the recipe's scripts and links
    assert (out / "lw.sh").resolve() == (REPO / "egs2" / "TEMPLATE" / "lw1" / "lw.sh").resolve()
    assert (out / "conf" / "reference_paper.yaml").is_file() and (out / "local" / "gpu_check.sh").is_file()
    conf = yaml.safe_load((out / "conf_gpu" / "student_r67.yaml").read_text())
    shipped = yaml.safe_load((RECIPE / "conf" / "student_r67.yaml").read_text())
    assert (conf["encrl"]["max_epoch"], conf["finetune"]["max_epoch"], conf["kd"]["max_epoch"]) == (1, 2, 3)
    assert conf["encrl"]["model_conf"] == shipped["encrl"]["model_conf"] and conf["reduction"] == shipped["reduction"]
    nokd = yaml.safe_load((out / "conf_gpu" / "student_r67_nokd.yaml").read_text())
    assert "kd" not in nokd["finetune"] and nokd["kd"] == conf["kd"]  # the kd baseline's section stays
    assert {**nokd["finetune"], "kd": conf["finetune"]["kd"]} == conf["finetune"]
    # nothing already made is overwritten; a recipe that has not run is named
    again = _prepare("--src", str(src), "--out", str(out), cwd=src)
    assert again.returncode != 0 and "exists" in again.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r2 = _prepare("--out", str(tmp_path / "gpu2"), cwd=empty)
    assert r2.returncode != 0 and "run ./run.sh --stage 1 --stop_stage 5" in r2.stderr
    assert not (tmp_path / "gpu2").exists()


def test_gpu_check_help_and_refusal_outside_a_copy(tmp_path):
    h = subprocess.run(["bash", str(CHECK), "--help"], capture_output=True, text=True, timeout=30)
    assert h.returncode == 0 and "gpu_check_prepare.py" in h.stdout and "--ref_cache false" in h.stdout
    r = subprocess.run(["bash", str(CHECK)], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "local/gpu_check_prepare.py" in r.stderr
    assert not (tmp_path / "exp").exists()
