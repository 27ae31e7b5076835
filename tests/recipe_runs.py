"""Helpers shared by the tests of the corpus recipes (tests/test_librispeech_recipe.py,
tests/test_tedlium_recipe.py): a scratch copy of a recipe dir, running its scripts, and the
checks of a full stages 1-13 run at tiny size."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence

REPO = Path(__file__).resolve().parents[1]

# A tiny model for the full runs on fixture trees: the CPU-scale reference config with 2 encoder
# blocks, one epoch, a CPU and one job everywhere.  The recipe's own settings (sets, speed
# perturbation, BPE unigram) stay; only the size of the model and of the vocabulary changes.
TINY_MODEL_ARGS = [
    "--ngpu", "0", "--nj", "1", "--inference_nj", "1",
    "--asr_config", "conf/reference_mini.yaml",
    "--asr_args", "--max_epoch 1 --batch_bins 300000 --encoder_conf num_blocks=2",
]
TINY_ASR_TAG = "reference_mini"
DECODE_TAG = "decode_ctc_greedy_asr_model_valid.loss.ave"


def recipe_copy(recipe: Path, dst: Path) -> Path:
    """A scratch copy of a recipe dir at ``dst`` (run.sh, db.sh and local/ copied; lw.sh and conf/
    linked back into the repository)."""
    dst.mkdir(parents=True)
    for f in ("run.sh", "db.sh"):
        shutil.copy2(recipe / f, dst / f)
    shutil.copytree(recipe / "local", dst / "local")
    os.symlink(REPO / "egs2" / "TEMPLATE" / "lw1" / "lw.sh", dst / "lw.sh")
    os.symlink(REPO / "conf", dst / "conf")
    return dst


def clone_recipe_run(src: Path, dst: Path) -> Path:
    """A copy at ``dst`` of a recipe dir that has run (its data, dump and exp included; lw.sh and conf/
    stay links into the repository). The run's outputs name their files relative to the recipe dir,
    except data/*/wav.scp, which point into the source's corpus: keep ``src`` while the copy is used."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dst, symlinks=True)
    return dst


def run(cmd: Sequence[str], cwd: Path, env_extra=None, timeout=240) -> subprocess.CompletedProcess:
    """Run a recipe script offline, single-threaded, with this checkout's espnet_lw importable."""
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", no_proxy="*", NO_PROXY="*",
               PYTHONPATH=pythonpath)
    env.update(env_extra or {})
    return subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def run_sh(recipe: Path, *args: str, check: bool = True, env_extra=None,
           timeout: int = 1500) -> subprocess.CompletedProcess:
    """``./run.sh ARGS`` in ``recipe`` (as :func:`run`); with ``check``, a failure raises with the log's tail."""
    proc = run(["./run.sh", *args], recipe, env_extra, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"run.sh {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-5000:]}")
    return proc


@dataclass
class FullRun:
    """A finished ``./run.sh`` (stages 1-13) in a scratch recipe dir."""

    dir: Path
    proc: subprocess.CompletedProcess
    seconds: float

    def exp(self, tag: str) -> Path:
        return self.dir / "exp" / f"asr_{tag}"


def full_run(recipe_dir: Path, args: Sequence[str], env_extra: Dict[str, str], timeout=900) -> FullRun:
    """``./run.sh ARGS`` (stages 1-13 unless ARGS says otherwise); fails with the log's tail."""
    t0 = time.monotonic()
    proc = run(["./run.sh", *args], recipe_dir, env_extra, timeout=timeout)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        raise AssertionError(f"run.sh {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-2000:]}\n{proc.stderr[-5000:]}")
    return FullRun(recipe_dir, proc, seconds)


# The mini_synth recipe at tiny size: the corpus's tiny split sizes, BPE 48, a 2-block reference trained
# for one epoch. One run of stages 1-13 with these arguments is shared by the test modules of the driver
# (conftest.py's ``tiny_mini_synth``); each takes its own copy (clone_recipe_run).
MINI_SYNTH = REPO / "egs2" / "mini_synth" / "lw1"
MINI_TINY_ARGS = [
    "--local_data_opts", "--size tiny",
    "--token_type", "bpe", "--nbpe", "48",
    "--asr_args", "--max_epoch 1 --batch_bins 300000 --encoder_conf num_blocks=2",
]
MINI_REF_TAG = "reference_mini_raw_bpe48"

# A one-block student of the tiny reference with one epoch per training (the kill/resume test's).
TINY_STUDENT = """\
num_blocks: 1
encrl:
    max_epoch: 1
    model_conf:
        alignment:
            clip: {weight: 1.0, level: utterance, temperature: 0.07}
            mse: {weight: 1.0, target: ctc_logp}
finetune:
    max_epoch: 1
scratch:
    max_epoch: 2
pruned:
    blocks: last
    max_epoch: 1
"""


def mini_synth_tiny_run(base: Path) -> FullRun:
    """Stages 1-13 of a scratch copy of the mini_synth recipe at ``base/lw1`` with MINI_TINY_ARGS (the
    default test sets: dev, test, field_test)."""
    d = recipe_copy(MINI_SYNTH, base / "lw1")
    return full_run(d, MINI_TINY_ARGS, {}, timeout=1200)


def tiny_full_run(recipe: Path, tmp_path: Path, nbpe: int, corpus_env: Dict[str, str]) -> FullRun:
    """Stages 1-13 of a scratch copy of ``recipe`` on the corpus that ``corpus_env`` (the db.sh
    variable) points at: the recipe's settings, a tiny model (TINY_MODEL_ARGS), BPE ``nbpe``."""
    if shutil.which("sox") is None:
        import pytest  # noqa: PLC0415

        pytest.skip("needs sox (speed perturbation, TED-LIUM audio)")
    d = recipe_copy(recipe, tmp_path / "recipe")
    return full_run(d, ["--nbpe", str(nbpe), "--local_data_opts", "--nj 1", *TINY_MODEL_ARGS], corpus_env)


def stage_status(d: Path) -> Dict[str, List[str]]:
    """Stage number -> the statuses exp/stage_times.tsv recorded for it, in order."""
    status: Dict[str, List[str]] = {}
    for line in (d / "exp" / "stage_times.tsv").read_text().splitlines():
        stage, _desc, _secs, st = line.split("\t")
        status.setdefault(stage, []).append(st)
    return status


def expected_markers(train_set_sp: str, valid_set: str, test_sets: Sequence[str], token_dir: str,
                     token_tag: str, asr_tag: str) -> List[str]:
    """The ``.done.stage<N>`` files a full reference run leaves (recipe-relative paths)."""
    exp = f"exp/asr_{asr_tag}_raw_{token_tag}"
    markers = ["data/.done.stage1", f"data/{train_set_sp}/.done.stage2",
               f"dump/raw/org/{train_set_sp}/.done.stage3", f"dump/raw/{train_set_sp}/.done.stage4",
               f"{token_dir}/.done.stage5", f"exp/asr_stats_raw_{token_tag}/.done.stage10",
               f"{exp}/.done.stage11"]
    markers += [f"dump/raw/{s}/.done.stage3" for s in dict.fromkeys([valid_set, *test_sets])]
    markers += [f"{exp}/{DECODE_TAG}/{s}/.done.stage12" for s in test_sets]
    return markers


def check_all_stages(run_: FullRun, markers: Sequence[str]) -> None:
    """Every stage 1-13 ran (6-9 say skipped: no LM) and left its marker."""
    status = stage_status(run_.dir)
    assert sorted(status, key=int) == [str(n) for n in range(1, 14)], status
    assert all(status[str(n)] == ["skipped"] for n in (6, 7, 8, 9)), status
    assert all(st == "done" for n in (1, 2, 3, 4, 5, 10, 11, 12, 13) for st in status[str(n)]), status
    missing = [m for m in markers if not (run_.dir / m).is_file()]
    assert not missing, f"missing stage markers: {missing}"
    assert "Successfully finished stages 1-13" in run_.proc.stderr


# sclite's summary line: | Sum/Avg | #Snt #Wrd | Corr Sub Del Ins Err S.Err |
_SUM_AVG = re.compile(r"\|\s*Sum/Avg\s*\|\s*(\d+)\s+(\d+)\s*\|" + r"\s*([\d.]+)" * 6 + r"\s*\|")


@dataclass
class ScliteSummary:
    n_sent: int
    n_words: int
    corr: float
    sub: float
    dele: float
    ins: float
    err: float


def read_sclite_summary(result_txt: Path) -> ScliteSummary:
    """The Sum/Avg line (percentages) of sclite's ``result.txt``."""
    m = _SUM_AVG.search(result_txt.read_text())
    assert m, f"no Sum/Avg line in {result_txt}"
    n_sent, n_words = int(m.group(1)), int(m.group(2))
    corr, sub, dele, ins, err, _serr = (float(g) for g in m.groups()[2:])
    return ScliteSummary(n_sent, n_words, corr, sub, dele, ins, err)


def read_text(path: Path) -> Dict[str, List[str]]:
    """A Kaldi text file: uttid -> words (an utterance may have none)."""
    out: Dict[str, List[str]] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts:
            out[parts[0]] = parts[1:]
    return out


def check_decoded_and_scored(run_: FullRun, exp: Path, test_sets: Sequence[str]) -> Dict[str, ScliteSummary]:
    """For every test set: a hypothesis per reference utterance, sclite's WER report with a numeric
    WER over all reference words, and a row in RESULTS.md.  Returns the summaries by set."""
    assert (exp / "valid.loss.ave.pth").is_file() and (exp / "config.yaml").is_file()
    assert int((exp / "params.txt").read_text().split()[0]) > 0
    results_md = (run_.dir / "RESULTS.md").read_text()
    assert "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|" in results_md and "run.sh" in results_md
    summaries = {}
    for dset in test_sets:
        out = exp / DECODE_TAG / dset
        ref = read_text(run_.dir / "dump" / "raw" / dset / "text")
        hyp = read_text(out / "text")
        assert ref and list(hyp) == list(ref), dset
        for score in ("score_wer", "score_cer"):
            assert (out / score / "ref.trn").is_file() and (out / score / "hyp.trn").is_file()
        s = read_sclite_summary(out / "score_wer" / "result.txt")
        assert s.n_sent == len(ref) and s.n_words == sum(len(w) for w in ref.values()), dset
        assert 0.0 <= s.err and abs(s.err - (s.sub + s.dele + s.ins)) < 0.2, s
        assert abs(s.corr + s.sub + s.dele - 100.0) < 0.2, s
        assert f"{DECODE_TAG}/{dset}|{s.n_sent}|{s.n_words}|" in results_md, dset
        summaries[dset] = s
    return summaries
