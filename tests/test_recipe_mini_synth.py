"""End-to-end tests of the stage driver (egs2/TEMPLATE/lw1/lw.sh) on the tiny mini_synth corpus.

One module-scoped run of stages 1-13 (tiny corpus, 1 epoch) feeds most tests; the others
check the driver's refusals (unknown options, missing tools, corrupt audio, no overwrite).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from recipe_runs import recipe_copy

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2" / "mini_synth" / "lw1"
TINY_ARGS = [
    "--local_data_opts", "--size tiny",
    "--token_type", "bpe", "--nbpe", "48",
    "--asr_args", "--max_epoch 1 --batch_bins 300000 --encoder_conf num_blocks=2",
]


def make_recipe_copy(dst: Path) -> Path:
    """A scratch copy of the mini_synth recipe (scripts copied, shared pieces symlinked)."""
    return recipe_copy(RECIPE, dst)


def run(recipe: Path, *args: str, env=None, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        ["./run.sh", *args], cwd=recipe, env=env, capture_output=True, text=True, timeout=1200
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"run.sh {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Stages 1-13 of mini_synth at tiny size; returns (recipe dir, completed process)."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("needs espeak-ng and sox (egs2/TEMPLATE/lw1/install.sh)")
    recipe = make_recipe_copy(tmp_path_factory.mktemp("e2e") / "lw1")
    proc = run(recipe, *TINY_ARGS)
    return recipe, proc


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
    env = dict(os.environ, PATH=str(bindir))
    proc = run(recipe, "--stage", "3", "--stop_stage", "3", env=env, check=False)
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


# ------------------------------------------------------------------------------------ students
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


def run_student(recipe: Path, mode: str) -> subprocess.CompletedProcess:
    student = recipe / "conf_student_tiny.yaml"
    student.write_text(TINY_STUDENT)
    return run(recipe, "--stage", "11", "--stop_stage", "13", "--test_sets", "test",
               "--student_config", str(student), "--student_mode", mode, *TINY_ARGS)


def test_encrl_student_end_to_end(tiny_run):
    import torch
    import yaml

    recipe, _ = tiny_run
    run_student(recipe, "encrl")
    ref = sorted(recipe.glob("exp/asr_reference_mini_raw_bpe48"))[0]
    ref_conf = yaml.safe_load((ref / "config.yaml").read_text())
    assert ref_conf["encoder_conf"]["num_blocks"] == 2 and ref_conf["encoder_conf"]["output_size"] == 144
    exp = recipe / "exp" / "asr_conf_student_tiny_encrl"
    # the reference targets were cached once, for every student to reuse
    assert (ref / "targets" / "train" / "ref_enc.scp").is_file()
    encrl_conf = yaml.safe_load((exp / "encrl" / "config.yaml").read_text())
    assert encrl_conf["model"] == "lw_encrl" and encrl_conf["encoder_conf"]["num_blocks"] == 1
    # EncRL checkpoints hold the student only: one block, no reference weights
    state = torch.load(exp / "encrl" / "valid.loss.ave.pth", map_location="cpu")
    assert any(k.startswith("encoder.encoders.0.") for k in state)
    assert not any(k.startswith("encoder.encoders.1.") for k in state)
    ft_conf = yaml.safe_load((exp / "config.yaml").read_text())
    assert ft_conf["model"] == "lw_ctc" and ft_conf["decoder"] is None
    assert any("encrl/valid.loss.ave.pth" in p for p in ft_conf["init_param"])
    student_params = int((exp / "params.txt").read_text().split()[0])
    ref_params = int((ref / "params.txt").read_text().split()[0])
    assert student_params < ref_params
    assert "Sum/Avg" in (next(exp.glob("decode_*")) / "test" / "score_wer" / "result.txt").read_text()
    assert "asr_conf_student_tiny_encrl" in (recipe / "RESULTS.md").read_text()


def test_pack_export_and_transcribe_a_student(tiny_run):
    """Stages 14-15 take the trained student to a zip and an ONNX model; ``transcribe`` reads the latter."""
    import json
    import sys
    import zipfile

    recipe, _ = tiny_run
    exp = recipe / "exp" / "asr_conf_student_tiny_encrl"
    if not (exp / "valid.loss.ave.pth").is_file():
        run_student(recipe, "encrl")
    student = recipe / "conf_student_tiny.yaml"
    proc = run(recipe, "--stage", "14", "--stop_stage", "15", "--student_config", str(student),
               "--export_parity_n", "5", *TINY_ARGS)
    assert "Successfully finished stages 14-15" in proc.stderr
    with zipfile.ZipFile(exp / "packed" / "model.zip") as z:
        names = z.namelist()
    assert any(n.endswith("config.yaml") for n in names) and any(n.endswith(".pth") for n in names)
    onnx = exp / "onnx"
    for f in ("model.onnx", "model.int8.onnx", "tokens.txt", "meta.json", "parity.json"):
        assert (onnx / f).is_file(), f
    parity = json.loads((onnx / "parity.json").read_text())
    assert parity["ok"] is True
    wav = (recipe / "dump/raw/test/wav.scp").read_text().splitlines()[0].split(maxsplit=1)[1]
    out = subprocess.run([sys.executable, "-m", "espnet_lw.bin.transcribe", str(onnx), str(recipe / wav)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1 and lines[0].split()[0] == Path(wav).stem
    # a re-run with the same options finds both stages done; with other export options it stops, naming them
    again = run(recipe, "--stage", "14", "--stop_stage", "15", "--student_config", str(student),
                "--export_parity_n", "5", *TINY_ARGS)
    assert "already packed: skipped" in again.stderr and "already exported: skipped" in again.stderr
    other = run(recipe, "--stage", "15", "--stop_stage", "15", "--student_config", str(student), *TINY_ARGS,
                check=False)
    assert other.returncode != 0 and "export_parity_n: 5 -> 100" in other.stderr


def test_scratch_and_pruned_baselines(tiny_run):
    import torch

    recipe, _ = tiny_run
    run_student(recipe, "scratch")
    run_student(recipe, "pruned")
    scratch = recipe / "exp" / "asr_conf_student_tiny_scratch"
    assert (scratch / "2epoch.pth").is_file()  # the scratch baseline gets the same total epochs
    pruned = recipe / "exp" / "asr_conf_student_tiny_pruned"
    ref_state = torch.load(next(recipe.glob("exp/asr_reference_*/valid.loss.ave.pth")), map_location="cpu")
    init = torch.load(pruned / "conf" / "init.pth", map_location="cpu")
    # "last": the student's only block starts as the reference's last block (index 1)
    key = "encoder.encoders.0.feed_forward.w_1.weight"
    assert torch.equal(init[key], ref_state["encoder.encoders.1.feed_forward.w_1.weight"])
    for exp in (scratch, pruned):
        assert (exp / ".done.stage11").is_file()
        assert (next(exp.glob("decode_*")) / "test" / "score_wer" / "result.txt").is_file()


def test_overwrite_of_a_student_keeps_its_reference(tiny_run):
    recipe, _ = tiny_run
    run_student(recipe, "scratch")  # skipped when the test above made it
    ref_model = next(recipe.glob("exp/asr_reference_*/valid.loss.ave.pth"))
    ref_stamp = ref_model.stat().st_mtime_ns
    student = recipe / "exp" / "asr_conf_student_tiny_scratch"
    old_model = (student / "valid.loss.ave.pth").read_bytes()
    student_conf = recipe / "conf_student_tiny.yaml"
    proc = run(recipe, "--stage", "11", "--stop_stage", "11", "--student_config", str(student_conf),
               "--student_mode", "scratch", "--overwrite", "true", *TINY_ARGS)
    assert "using the trained reference" in proc.stderr
    assert ref_model.stat().st_mtime_ns == ref_stamp  # the reference was not retrained
    assert not list(ref_model.parent.parent.glob("asr_reference_*.old.*"))
    kept = sorted(student.parent.glob("asr_conf_student_tiny_scratch.old.*"))
    assert kept and (kept[-1] / "valid.loss.ave.pth").read_bytes() == old_model
    assert (student / ".done.stage11").is_file()  # and the student was trained again


def test_changed_config_of_a_trained_student_stops_stage_11(tiny_run, tmp_path):
    recipe, _ = tiny_run
    run_student(recipe, "scratch")  # skipped when a test above made it
    student = recipe / "exp" / "asr_conf_student_tiny_scratch"
    conf = yaml.safe_load((recipe / "conf_student_tiny.yaml").read_text())
    conf["scratch"]["max_epoch"] += 1
    changed = tmp_path / "conf_student_tiny.yaml"  # same name, so the same --student_tag
    changed.write_text(yaml.safe_dump(conf))
    before = (student / "conf" / "scratch.yaml").read_text()
    proc = run(recipe, "--stage", "11", "--stop_stage", "11", "--student_config", str(changed),
               "--student_mode", "scratch", *TINY_ARGS, check=False)
    assert proc.returncode != 0
    assert "scratch.yaml" in proc.stderr and "--overwrite true" in proc.stderr
    assert (student / "conf" / "scratch.yaml").read_text() == before
    assert (student / ".done.stage11").is_file()


@pytest.mark.parametrize("token_args", [["--token_type", "char"], ["--token_type", "bpe", "--nbpe", "64"]])
def test_option_setup_for_each_token_type(tmp_path, token_args):
    """The driver's set-up code runs under `set -e` for every token type (no stage selected)."""
    recipe = make_recipe_copy(tmp_path / "lw1")
    proc = run(recipe, "--stage", "99", "--stop_stage", "99", *token_args, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Successfully finished stages 99-99" in proc.stderr
