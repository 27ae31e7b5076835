"""Kill the stage driver anywhere and resume: SIGKILL to the whole process group of a tiny stages 1-13
run (reference + EncRL student) at pseudo-random points of stages 3, 5, 10, every step of 11 (reference
training, its checkpoint save, the reference targets, EncRL, fine-tuning), 12 and 13; after each kill the
same command is run again. The final WER table must equal that of an uninterrupted run (run alongside,
in another recipe copy), and no partial decode may ever have been scored.

Fast by design: the tiny corpus, one epoch, one test set; every re-run reuses what earlier runs finished;
a kill is timed from the stage log line it targets (plus a seeded random delay), never from a blind sleep.
LW_KILL_SEED picks other kill points."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import List, Optional, Tuple

import pytest
from recipe_runs import TINY_STUDENT, recipe_copy

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2" / "mini_synth" / "lw1"
STUDENT = "exp/asr_conf_student_tiny_encrl"
DECODE = f"{STUDENT}/decode_ctc_greedy_asr_model_valid.loss.ave/test"

# (the stage log line a kill waits for, the shortest and the longest delay after it in seconds)
KILLS: List[Tuple[str, float, float]] = [
    (r"Stage 3: format", 0.2, 1.5),
    (r"Stage 5: token list", 0.3, 2.5),
    (r"Stage 10: feature statistics", 0.5, 4.0),
    (r"Stage 10: feature statistics", 3.0, 8.0),
    (r"Stage 11: training exp/asr_reference", 0.5, 6.0),
    (r"\d+epoch results", 0.0, 0.4),  # the reference's checkpoint and model averaging
    (r"Stage 11: reference targets", 0.3, 3.0),
    (r"Stage 11: training \S+_encrl/encrl$", 0.5, 6.0),
    (r"Stage 11: training \S+_encrl$", 0.5, 6.0),
    (r"Stage 12: decoding", 0.5, 4.0),
    (r"Stage 12: decoding", 4.0, 10.0),
    (r"Stage 13: scoring", 0.0, 0.6),
]

pytestmark = pytest.mark.slow


def command(student: Path) -> List[str]:
    return ["./run.sh", "--local_data_opts", "--size tiny", "--token_type", "bpe", "--nbpe", "48",
            "--nj", "1", "--inference_nj", "1", "--test_sets", "test",
            "--asr_args", "--max_epoch 1 --batch_bins 300000 --encoder_conf num_blocks=2",
            "--student_config", str(student), "--student_mode", "encrl"]


def environment() -> dict:
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=pythonpath)


def start(recipe: Path, student: Path) -> subprocess.Popen:
    return subprocess.Popen(command(student), cwd=recipe, env=environment(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def run_until(recipe: Path, student: Path, trigger: Optional[str], delay: float) -> Tuple[bool, int, str]:
    """Run the command; ``delay`` s after a line matching ``trigger`` SIGKILL its whole process group.
    Returns (killed, exit status, output)."""
    p = start(recipe, student)
    lines: List[str] = []
    hit = threading.Event()
    pattern = re.compile(trigger) if trigger else None

    def reader() -> None:
        for line in p.stdout:
            lines.append(line)
            if pattern and not hit.is_set() and pattern.search(line.rstrip("\n")):
                hit.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    killed = False
    deadline = time.monotonic() + 600
    while p.poll() is None and time.monotonic() < deadline:
        if hit.wait(0.05):
            time.sleep(delay)
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                killed = True
            break
    if p.poll() is None and not killed:
        os.killpg(p.pid, signal.SIGKILL)
        raise AssertionError(f"run timed out:\n{''.join(lines)[-3000:]}")
    p.wait()
    t.join(10)
    # nothing of the killed run may outlive it (zombies not yet reaped by init aside)
    deadline = time.monotonic() + 10
    while live_in_group(p.pid):
        assert time.monotonic() < deadline, f"processes of the killed run survive: {live_in_group(p.pid)}"
        time.sleep(0.1)
    return killed, p.returncode, "".join(lines)


def live_in_group(pgid: int) -> List[int]:
    """The pids of process group ``pgid`` that are not zombies (from /proc)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def wer_table(recipe: Path) -> dict:
    """What must not depend on kills: the WER/CER rows of RESULTS.md, sclite's totals, the hypotheses."""
    rows = [ln for ln in (recipe / "RESULTS.md").read_text().splitlines()
            if ln.startswith("|decode_")]
    out = {"rows": rows, "hyp": (recipe / DECODE / "text").read_text()}
    for kind in ("wer", "cer"):
        res = (recipe / DECODE / f"score_{kind}" / "result.txt").read_text()
        out[kind] = [ln for ln in res.splitlines() if "Sum/Avg" in ln]
    return out


SUMMARY = re.compile(r": WER [\d.]+ \(.*?, (\d+) utts\)")


def test_sigkill_anywhere_then_rerun_gives_the_uninterrupted_result(tmp_path):
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (egs2/TEMPLATE/lw1/install.sh)")
    t0 = time.monotonic()
    rng = random.Random(int(os.environ.get("LW_KILL_SEED", "13")))
    killed_dir = recipe_copy(RECIPE, tmp_path / "killed" / "lw1")
    clean_dir = recipe_copy(RECIPE, tmp_path / "clean" / "lw1")
    for d in (killed_dir, clean_dir):
        (d / "conf_student_tiny.yaml").write_text(TINY_STUDENT)
    student = Path("conf_student_tiny.yaml")

    clean = start(clean_dir, student)  # the uninterrupted run, alongside
    outputs, kills = [], []
    for trigger, lo, hi in KILLS:
        delay = rng.uniform(lo, hi)
        killed, rc, out = run_until(killed_dir, student, trigger, delay)
        outputs.append(out)
        if killed:
            stages = re.findall(r"\(lw.sh:\d+\) (Stage \d+: .*)", out)
            kills.append(f"{trigger!r} +{delay:.1f}s (in: {stages[-1] if stages else '?'})")
        else:
            assert rc == 0, f"a re-run after a kill failed ({rc}):\n{out[-4000:]}"
    killed, rc, out = run_until(killed_dir, student, None, 0)
    outputs.append(out)
    assert rc == 0 and "Successfully finished stages 1-13" in out, out[-4000:]
    clean_out, _ = clean.communicate(timeout=900)
    assert clean.returncode == 0, clean_out[-4000:]

    assert len(kills) >= 10, kills
    covered = " ".join(kills)
    for stage in ("Stage 3:", "Stage 5:", "Stage 10:", "Stage 12:", "Stage 13:", "reference targets",
                  "training exp/asr_reference", "/encrl)", "_encrl)"):
        assert stage in covered, (stage, kills)
    assert wer_table(killed_dir) == wer_table(clean_dir), kills
    # no partial file was ever scored: every scoring of every run saw every utterance
    n_ref = len((killed_dir / "dump/raw/test/text").read_text().splitlines())
    scored = [int(n) for out in outputs for n in SUMMARY.findall(out)]
    assert scored and all(n == n_ref for n in scored), scored
    assert not any("scored as deletions" in out for out in outputs)
    assert not list(killed_dir.glob("**/*.tmp")), "a temporary output was left behind"
    print(f"{len(kills)} kills in {time.monotonic() - t0:.0f} s:\n  " + "\n  ".join(kills))
