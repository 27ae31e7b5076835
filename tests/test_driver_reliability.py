"""The stage driver's refusals (egs2/TEMPLATE/lw1/lw.sh), each in seconds, without training a model:
option validation, the exp-dir lock, options recorded in stage markers, stage 13's refusal of a
partial decode, and a training that diverged or learnt nothing (a stand-in trainer via --python)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from recipe_runs import recipe_copy

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2" / "mini_synth" / "lw1"
SETS = ["--train_set", "train", "--valid_set", "dev", "--test_sets", "test"]
DECODE = "exp/asr_reference_mini_raw_char/decode_ctc_greedy_asr_model_valid.loss.ave/test"


@pytest.fixture
def recipe(tmp_path) -> Path:
    return recipe_copy(RECIPE, tmp_path / "lw1")


def lw(recipe: Path, *args: str, env_extra=None) -> subprocess.CompletedProcess:
    """``./lw.sh ARGS`` with the recipe's sets and no required tools (each test makes its own inputs)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), **(env_extra or {}))
    return subprocess.run(["./lw.sh", *SETS, "--token_type", "char", "--required_tools", "", *args],
                          cwd=recipe, env=env, capture_output=True, text=True, timeout=120)


# ------------------------------------------------------------------------------------ options
@pytest.mark.parametrize("opt,value,message", [
    ("--fs", "x[$(touch pwned)]", "--fs must be a sampling rate"),
    ("--fs", "16k; touch pwned", "--fs must be a sampling rate"),
    ("--nj", "$(touch pwned)", "--nj must be a whole number >= 1"),
    ("--nj", "0", "--nj must be a whole number >= 1"),
    ("--ngpu", "-1", "--ngpu must be a whole number"),
    ("--nbpe", "1e3", "--nbpe must be a whole number"),
    ("--inference_nj", "2 3", "--inference_nj must be a whole number"),
    ("--stage", "x[0]", "--stage must be a whole number"),
    ("--max_wav_duration", "20s", "--max_wav_duration must be a number"),
    ("--gpu_inference", "yes", "--gpu_inference must be one of: true false"),
    ("--audio_format", "mp3", "--audio_format must be one of: flac wav"),
    ("--test_sets", "test ../x", "data set names are directory names"),
])
def test_bad_option_values_are_refused_before_any_work(recipe, opt, value, message):
    proc = lw(recipe, opt, value)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
    assert not (recipe / "pwned").exists() and not (recipe / "exp").exists()


# ------------------------------------------------------------------------------------ lock
def test_second_run_on_a_held_exp_dir_stops_naming_the_holder(recipe):
    (recipe / "exp").mkdir()
    with open(recipe / "exp" / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        (recipe / "exp" / ".lock").write_text(
            f"pid={os.getpid()} host={os.uname().nodename} started=now command=./run.sh --stage 11\n")
        proc = lw(recipe, "--stage", "6", "--stop_stage", "6")
    assert proc.returncode != 0
    assert "exp is in use by another lw.sh run" in proc.stderr and f"pid={os.getpid()}" in proc.stderr
    assert "command=./run.sh --stage 11" in proc.stderr and "remove exp/.lock" in proc.stderr
    assert "Stage 6" not in proc.stderr


def test_stale_lock_of_a_dead_run_is_taken_over_with_a_warning(recipe):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (recipe / "exp").mkdir()
    (recipe / "exp" / ".lock").write_text(f"pid={dead.pid} host={os.uname().nodename} started=then command=x\n")
    proc = lw(recipe, "--stage", "6", "--stop_stage", "6")
    assert proc.returncode == 0, proc.stderr
    assert "taking over a stale lock" in proc.stderr and f"pid={dead.pid}" in proc.stderr
    assert (recipe / "exp" / ".lock").read_text() == ""  # released at the end


# ------------------------------------------------------------------------------------ option records
def write_train_text(recipe: Path, text: str) -> None:
    d = recipe / "dump" / "raw" / "train"
    d.mkdir(parents=True, exist_ok=True)
    (d / "text").write_text(text)


def test_changed_options_are_never_silently_reused(recipe):
    """Stage 5's marker records its options: a change is refused naming it, --overwrite true redoes it."""
    write_train_text(recipe, "u1 HELLO WORLD\nu2 GOOD MORNING\n")
    first = lw(recipe, "--stage", "5", "--stop_stage", "5")
    assert first.returncode == 0, first.stderr
    tokens = recipe / "data" / "token_list" / "char"
    marker = (tokens / ".done.stage5").read_text()
    assert marker.startswith("hash=") and "oov=<unk>" in marker
    assert not list(tokens.parent.glob("char.tmp*"))
    assert "already exists: skipped" in lw(recipe, "--stage", "5", "--stop_stage", "5").stderr

    changed = lw(recipe, "--stage", "5", "--stop_stage", "5", "--oov", "<UNK>")
    assert changed.returncode != 0 and "oov: <unk> -> <UNK>" in changed.stderr
    assert "--overwrite true redoes it" in changed.stderr
    write_train_text(recipe, "u1 HELLO WORLD\nu2 GOOD EVENING\n")
    retext = lw(recipe, "--stage", "5", "--stop_stage", "5")
    assert retext.returncode != 0 and "train text:" in retext.stderr

    redo = lw(recipe, "--stage", "5", "--stop_stage", "5", "--overwrite", "true")
    assert redo.returncode == 0, redo.stderr
    assert "V" in (tokens / "tokens.txt").read_text().split()  # from EVENING
    assert len(list(tokens.parent.glob("char.old.*"))) == 1


def test_a_failed_stage_leaves_no_output(recipe):
    """Stage 5 writes into a temporary dir: a failure (no vocabulary this big) leaves no token dir."""
    write_train_text(recipe, "u1 A B\n")
    proc = lw(recipe, "--stage", "5", "--stop_stage", "5", "--token_type", "bpe", "--nbpe", "500")
    assert proc.returncode != 0
    assert not (recipe / "data" / "token_list" / "bpe_unigram500").exists()


# ------------------------------------------------------------------------------------ stage 13
def decode_fixture(recipe: Path, hyps: str, done: bool) -> Path:
    ref = recipe / "dump" / "raw" / "test"
    ref.mkdir(parents=True)
    (ref / "text").write_text("u1 A B\nu2 C D\nu3 E F\n")
    (ref / "utt2spk").write_text("u1 s\nu2 s\nu3 s\n")
    out = recipe / DECODE
    out.mkdir(parents=True)
    (out / "text").write_text(hyps)
    if done:
        (out / ".done.stage12").touch()
    return out


def test_stage13_refuses_a_decode_that_stage12_did_not_finish(recipe):
    out = decode_fixture(recipe, "u1 A B\nu2 C D\nu3 E F\n", done=False)
    proc = lw(recipe, "--stage", "13", "--stop_stage", "13")
    assert proc.returncode != 0 and "stage 12 has not finished decoding test" in proc.stderr
    assert not (out / "score_wer").exists() and not (recipe / "RESULTS.md").exists()


def test_stage13_refuses_missing_hypotheses_naming_them(recipe):
    if shutil.which("sclite") is None and not Path("/usr/lib/sctk/bin/sclite").exists():
        pytest.skip("needs sclite (Debian package sctk)")
    out = decode_fixture(recipe, "u1 A B\n", done=True)
    proc = lw(recipe, "--stage", "13", "--stop_stage", "13")
    assert proc.returncode != 0
    assert "2 of 3 reference utterance(s) have no hypothesis: u2, u3" in proc.stderr, proc.stderr
    assert "WER" not in proc.stdout and not (out / "score_wer").exists()
    assert not (recipe / "RESULTS.md").exists()


# ------------------------------------------------------------------------------------ training
FAKE_PYTHON = """#!/usr/bin/env bash
# a stand-in trainer: ESPnet's outcome named by $FAKE_TRAIN, written into --output_dir; other modules run for real
if [ "$1" = -m ] && [ "$2" = espnet_lw.bin.asr_train ]; then
    prev=""; for a in "$@"; do [ "$prev" = --output_dir ] && out="$a"; prev="$a"; done
    mkdir -p "$out"
    case "$FAKE_TRAIN" in
        invalid) echo "WARNING: The gradients at all steps are invalid in this epoch. Something seems wrong."
                 touch "$out/checkpoint.pth" "$out/valid.loss.ave.pth" ;;
        nan) echo "INFO: 1epoch results: [train] loss_ctc=nan, loss=nan, [valid] loss_att=nan, loss=nan"
             touch "$out/checkpoint.pth" "$out/valid.loss.ave.pth" ;;
        empty) echo "INFO: The training was finished at 0 epochs" ;;
        crash) echo "Traceback: killed"; exit 1 ;;
        slow) sleep 4 ;;
    esac
    exit 0
fi
exec python3 "$@"
"""


def fake_python(recipe: Path, tmp_path: Path) -> Path:
    fake = tmp_path / "fake_python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    stats = recipe / "exp" / "asr_stats_raw_char" / "train"
    stats.mkdir(parents=True)
    (stats / "feats_stats.npz").touch()
    return fake


@pytest.mark.parametrize("outcome,message", [
    ("invalid", "training diverged: ESPnet stopped it because the gradients at all steps"),
    ("nan", "training diverged: the loss became NaN/inf"),
    ("empty", "training ended without a checkpoint"),
])
def test_a_diverged_or_empty_training_fails_its_stage(recipe, tmp_path, outcome, message):
    fake = fake_python(recipe, tmp_path)
    proc = lw(recipe, "--stage", "11", "--stop_stage", "11", "--python", str(fake),
              env_extra={"FAKE_TRAIN": outcome})
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
    assert not (recipe / "exp" / "asr_reference_mini_raw_char" / ".done.stage11").exists()


def test_resuming_a_training_with_other_options_is_refused(recipe, tmp_path):
    fake = fake_python(recipe, tmp_path)
    first = lw(recipe, "--stage", "11", "--stop_stage", "11", "--python", str(fake), "--asr_args", "--max_epoch 3",
               env_extra={"FAKE_TRAIN": "crash"})
    assert first.returncode != 0 and "training failed (exit 1)" in first.stderr
    again = lw(recipe, "--stage", "11", "--stop_stage", "11", "--python", str(fake), "--asr_args", "--max_epoch 5",
               env_extra={"FAKE_TRAIN": "crash"})
    assert again.returncode != 0, again.stderr
    assert "holds an unfinished run made with other options than now: trainer args:" in again.stderr
    assert "--max_epoch 3" in again.stderr and "--max_epoch 5" in again.stderr


def test_editing_lw_sh_during_a_run_does_not_break_it(recipe, tmp_path):
    """bash reads a script as it runs it; lw.sh is one brace group, parsed whole before it starts."""
    fake = fake_python(recipe, tmp_path)
    (recipe / "lw.sh").unlink()
    shutil.copy2(REPO / "egs2" / "TEMPLATE" / "lw1" / "lw.sh", recipe / "lw.sh")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), FAKE_TRAIN="slow")
    p = subprocess.Popen(["./lw.sh", *SETS, "--token_type", "char", "--required_tools", "", "--stage", "11",
                          "--stop_stage", "11", "--python", str(fake)],
                         cwd=recipe, env=env, stderr=subprocess.PIPE, text=True)
    log = recipe / "exp" / "asr_reference_mini_raw_char" / "train.log"
    for _ in range(200):
        if log.exists():
            break
        time.sleep(0.05)
    text = (recipe / "lw.sh").read_text()
    (recipe / "lw.sh").write_text(text.replace("set -euo pipefail", "# an update\n" * 40 + "set -euo pipefail", 1))
    _, err = p.communicate(timeout=60)
    assert p.returncode != 0 and "training ended without a checkpoint" in err, err
    assert "command not found" not in err and "syntax error" not in err
