"""End-to-end tests of the stage driver (egs2/TEMPLATE/lw1/lw.sh) on the tiny mini_synth corpus.

The session's tiny run of stages 1-13 (conftest.py's ``tiny_mini_synth``: tiny corpus, 1 epoch), copied
once for this module, feeds most tests; the others check the driver's refusals (unknown options, missing
tools, corrupt audio, no overwrite). The students' stages are tested in test_student_modes_recipe.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from recipe_runs import MINI_SYNTH as RECIPE
from recipe_runs import MINI_TINY_ARGS as TINY_ARGS
from recipe_runs import clone_recipe_run, recipe_copy
from recipe_runs import run_sh as run

REPO = Path(__file__).resolve().parents[1]


def make_recipe_copy(dst: Path) -> Path:
    """A scratch copy of the mini_synth recipe (scripts copied, shared pieces symlinked)."""
    return recipe_copy(RECIPE, dst)


@pytest.fixture(scope="module")
def tiny_run(tiny_mini_synth, tmp_path_factory):
    """A copy of the session's stages 1-13 run; returns (recipe dir, the run's completed process)."""
    recipe = clone_recipe_run(tiny_mini_synth.dir, tmp_path_factory.mktemp("e2e") / "lw1")
    return recipe, tiny_mini_synth.proc


def decode_dir(recipe: Path) -> Path:
    dirs = sorted(recipe.glob("exp/asr_*/decode_*"))
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_all_stages_ran(tiny_run):
    recipe, proc = tiny_run
    times = (recipe / "exp" / "stage_times.tsv").read_text().splitlines()
    stages = [line.split("\t")[0] for line in times]
    assert stages == [str(n) for n in range(1, 14)]
    status = {line.split("\t")[0]: line.split("\t")[3] for line in times}
    assert status["2"] == "skipped"  # no speed perturbation by default
    assert all(status[str(n)] == "skipped" for n in (6, 7, 8, 9))
    assert all(status[str(n)] == "done" for n in (1, 3, 4, 5, 10, 11, 12, 13))
    assert "Successfully finished stages 1-13" in proc.stderr


def test_data_and_dump_dirs(tiny_run):
    recipe, _ = tiny_run
    for dset in ("train", "dev", "test", "field_adapt", "field_test"):
        for f in ("wav.scp", "text", "utt2spk", "spk2utt"):
            assert (recipe / "data" / dset / f).is_file()
    noise = (recipe / "data/noise/wav.scp").read_text().splitlines()
    assert noise and all(Path(line.split(maxsplit=1)[1]).is_file() for line in noise)
    wav = (recipe / "dump/raw/test/wav.scp").read_text().splitlines()
    path = recipe / wav[0].split(maxsplit=1)[1]
    assert path.is_file() and path.suffix == ".flac"
    n = len((recipe / "dump/raw/test/utt2num_samples").read_text().splitlines())
    assert n == len(wav) > 0
    tokens = (recipe / "data/token_list/bpe_unigram48/tokens.txt").read_text().split("\n")
    assert tokens[0] == "<blank>" and tokens[1] == "<unk>" and tokens[-2] == "<sos/eos>"
    assert (recipe / "exp/asr_stats_raw_bpe48/train/feats_stats.npz").is_file()


def test_model_decoding_and_scoring(tiny_run):
    recipe, _ = tiny_run
    exp = sorted(recipe.glob("exp/asr_*_raw_bpe48"))[0]
    assert (exp / "valid.loss.ave.pth").is_file() and (exp / "config.yaml").is_file()
    ddir = decode_dir(recipe)
    for dset in ("dev", "test", "field_test"):
        hyp = (ddir / dset / "text").read_text().splitlines()
        ref = (recipe / "dump/raw" / dset / "text").read_text().splitlines()
        assert [h.split()[0] for h in hyp] == [r.split()[0] for r in ref]
        result = (ddir / dset / "score_wer" / "result.txt").read_text()
        assert "Sum/Avg" in result
        assert (ddir / dset / "score_cer" / "result.txt").is_file()
    results = (recipe / "RESULTS.md").read_text()
    assert "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|" in results
    for dset in ("dev", "test", "field_test"):
        assert f"{ddir.name}/{dset}|" in results
    assert "run.sh" in results or "lw.sh" in results


def test_rerun_skips_finished_stages(tiny_run):
    recipe, _ = tiny_run
    ddir = decode_dir(recipe)
    hyp = ddir / "test" / "text"
    before = (hyp.stat().st_mtime_ns, (recipe / "exp").glob("asr_*/valid.loss.ave.pth"))
    proc = run(recipe, "--stage", "3", "--stop_stage", "12", *TINY_ARGS)
    assert "already formatted: skipped" in proc.stderr
    assert "is trained" in proc.stderr and "already decoded: skipped" in proc.stderr
    assert hyp.stat().st_mtime_ns == before[0]
    # a stage that found all its work done is recorded as skipped, so RESULTS.md keeps the real cost
    rows = [ln.split("\t") for ln in (recipe / "exp/stage_times.tsv").read_text().splitlines()]
    last = {r[0]: r[3] for r in rows}
    assert last["3"] == "skipped" and last["12"] == "skipped"
    assert any(r[0] == "12" and r[3] == "done" and float(r[2]) > 0 for r in rows)
    results = (recipe / "RESULTS.md").read_text()
    assert "- trained by: `" in results


def test_overwrite_keeps_old_output(tiny_run):
    recipe, _ = tiny_run
    ddir = decode_dir(recipe)
    old = (ddir / "dev" / "text").read_text()
    run(recipe, "--stage", "12", "--stop_stage", "12", "--test_sets", "dev", "--overwrite", "true", *TINY_ARGS)
    kept = sorted(ddir.glob("dev.old.*"))
    assert kept and (kept[0] / "text").read_text() == old
    assert (ddir / "dev" / "text").read_text() == old  # same model, same greedy result


def test_unknown_option_is_refused(tmp_path):
    recipe = make_recipe_copy(tmp_path / "lw1")
    proc = run(recipe, "--no_such_option", "1", check=False)
    assert proc.returncode != 0
    assert "unknown option --no_such_option" in proc.stderr
    assert not (recipe / "data").exists()


def test_help_lists_stages(tmp_path):
    recipe = make_recipe_copy(tmp_path / "lw1")
    proc = subprocess.run(["./lw.sh", "--help"], cwd=recipe, capture_output=True, text=True)
    assert proc.returncode == 0
    assert "13  scoring with sclite" in proc.stdout and "--stop_stage" in proc.stdout


def test_missing_tool_is_named(tmp_path):
    """With sox hidden from PATH the driver stops before any stage and names the package."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("bash", "env", "python3", "date", "dirname", "basename", "mkdir", "cat", "sed"):
        src = shutil.which(tool)
        if src:
            os.symlink(src, bindir / tool)
    recipe = make_recipe_copy(tmp_path / "lw1")
    proc = run(recipe, "--stage", "3", "--stop_stage", "3", env_extra={"PATH": str(bindir)}, check=False)
    assert proc.returncode != 0
    assert "missing system tool 'sox'" in proc.stderr and "apt-get install sox" in proc.stderr


def test_corrupt_audio_is_named(tmp_path, make_tiny_data_dir):
    """A corrupt audio file stops stage 3 with an error naming the utterance and the file."""
    recipe = make_recipe_copy(tmp_path / "lw1")
    for dset in ("train", "dev", "test", "field_test"):
        src = make_tiny_data_dir(dset)
        shutil.copytree(src, recipe / "data" / dset)
    (recipe / "data" / ".done.stage1").touch()
    first = (recipe / "data/dev/wav.scp").read_text().splitlines()[0]
    uttid, path = first.split(maxsplit=1)
    bad = tmp_path / "corrupt.flac"
    bad.write_bytes(b"fLaC this is not audio")
    lines = (recipe / "data/dev/wav.scp").read_text().replace(path, str(bad))
    (recipe / "data/dev/wav.scp").write_text(lines)
    proc = run(recipe, "--stage", "3", "--stop_stage", "3", check=False)
    assert proc.returncode != 0
    assert "corrupt.flac" in proc.stderr and uttid in proc.stderr
    assert not (recipe / "dump/raw/dev/.done.stage3").exists()


@pytest.mark.parametrize("token_args", [["--token_type", "char"], ["--token_type", "bpe", "--nbpe", "64"]])
def test_option_setup_for_each_token_type(tmp_path, token_args):
    """The driver's set-up code runs under `set -e` for every token type (no stage selected)."""
    recipe = make_recipe_copy(tmp_path / "lw1")
    proc = run(recipe, "--stage", "99", "--stop_stage", "99", *token_args, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Successfully finished stages 99-99" in proc.stderr
