"""The stage driver run from a directory whose path holds a space (stages 1-13 of the tiny mini_synth
recipe), then Ctrl-C and SIGTERM during a stage-11 training: no trainer may survive its driver."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from recipe_runs import recipe_copy, run

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2" / "mini_synth" / "lw1"
MODEL = "--batch_bins 300000 --encoder_conf num_blocks=2"
ARGS = ["--local_data_opts", "--size tiny", "--token_type", "bpe", "--nbpe", "48", "--nj", "1",
        "--inference_nj", "1", "--test_sets", "test", "--asr_args", f"--max_epoch 1 {MODEL}"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spaced(tmp_path_factory):
    """Stages 1-13 in ``.../dir with space/lw1`` (the corpus itself outside: a Kaldi wav.scp cannot
    hold a path with a space, and prep_librispeech says so)."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("needs espeak-ng and sox (egs2/TEMPLATE/lw1/install.sh)")
    base = tmp_path_factory.mktemp("spaced")
    recipe = recipe_copy(RECIPE, base / "dir with space" / "lw1")
    env = {"MINI_SYNTH": str(base / "corpus")}
    proc = run(["./run.sh", *ARGS], recipe, env, timeout=900)
    return recipe, env, proc


def test_recipe_runs_from_a_path_with_a_space(spaced):
    recipe, _, proc = spaced
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Successfully finished stages 1-13" in proc.stderr
    result = next(recipe.glob("exp/asr_*/decode_*/test/score_wer/result.txt"))
    assert "Sum/Avg" in result.read_text() and " " in str(recipe)
    assert "|dataset|Snt|Wrd|" in (recipe / "RESULTS.md").read_text()


def trainer_pids(tag: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", "--", f"--output_dir exp/asr_{tag} "], capture_output=True, text=True)
    return out.stdout.split()


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupt_stops_the_trainer(spaced, how):
    """Ctrl-C (SIGINT to the whole foreground group: run.sh, lw.sh and the trainer, which, started in
    the background by a non-interactive bash, ignores it) or SIGTERM to lw.sh alone: the driver's trap
    stops the trainer, releases the lock and marks nothing done."""
    if shutil.which("pgrep") is None:
        pytest.skip("needs pgrep (procps)")
    recipe, env, proc = spaced
    assert proc.returncode == 0
    tag = f"interrupt_{how.replace('-', '_')}"
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    full_env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=pythonpath, **env)
    cmd = ["./run.sh", *ARGS[:-1], f"--max_epoch 200 {MODEL}", "--stage", "11", "--stop_stage", "11",
           "--asr_tag", tag]
    # as from a terminal: SIGINT at its default in the driver. A process whose parent ignores SIGINT (a
    # pytest-xdist worker, a job started with '&' by a script) inherits that, and bash cannot trap a signal
    # that was ignored when it started: there Ctrl-C never reaches the driver at all (SIGTERM does).
    p = subprocess.Popen(cmd, cwd=recipe, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not trainer_pids(tag):
            assert p.poll() is None and time.monotonic() < deadline, "the trainer never started"
            time.sleep(0.2)
        time.sleep(1.0)
        lock = (recipe / "exp" / ".lock").read_text()
        if how == "ctrl-c":
            os.killpg(p.pid, signal.SIGINT)
        else:
            driver = int(lock.split()[0].removeprefix("pid="))
            os.kill(driver, signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode != 0
    assert "interrupted (SIG" in err and "stopping the processes this run started" in err
    time.sleep(0.5)
    assert trainer_pids(tag) == [], "a trainer outlived its driver"
    assert (recipe / "exp" / ".lock").read_text() == ""
    assert not (recipe / "exp" / f"asr_{tag}" / ".done.stage11").exists()
