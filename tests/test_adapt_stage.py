"""Stage 16 of the driver (field adaptation) end to end on the tiny mini_synth corpus: a tiny reference
(stages 1-13), adapted on field_adapt with replay, freezing and noise, decoded and scored on field_test
and test; a re-run skips it, other options are refused, an adaptation killed before its marker resumes
without training again, and --overwrite true redoes it keeping the old one aside."""

from __future__ import annotations

import subprocess

import pytest
import torch
import yaml
from recipe_runs import MINI_TINY_ARGS as TINY_ARGS
from recipe_runs import clone_recipe_run, run_sh

from espnet_lw.data.kaldi_dir import read_kv

pytestmark = pytest.mark.slow  # a tiny reference + an adaptation through lw.sh: several minutes on 2 cores

ADAPT = {"epochs": 1, "batch_size": 4, "lr": 0.001, "replay": 0.25, "valid_share": 0.25,
         "freeze": ["encoder.encoders.0"], "noise_scp": "data/noise/wav.scp", "noise_apply_prob": 1.0,
         "noise_db_range": [5, 10]}
STAGE16 = ["--stage", "16", "--stop_stage", "16", "--adapt_set", "field_adapt", "--adapt_config", "adapt_tiny.yaml"]


def _run(recipe, *args, check=True) -> subprocess.CompletedProcess:
    return run_sh(recipe, *args, *TINY_ARGS, check=check)


@pytest.fixture(scope="module")
def adapted(tiny_mini_synth, tmp_path_factory):
    """A copy of the session's tiny mini_synth run (a trained 2-block reference), adapted by stage 16."""
    recipe = clone_recipe_run(tiny_mini_synth.dir, tmp_path_factory.mktemp("adapt") / "lw1")
    (recipe / "adapt_tiny.yaml").write_text(yaml.safe_dump(ADAPT))
    ref = next(recipe.glob("exp/asr_reference_mini_*"))
    ref_state = {k: v.clone() for k, v in torch.load(ref / "valid.loss.ave.pth").items()}
    proc = _run(recipe, *STAGE16)
    return recipe, ref, ref_state, proc


def test_stage16_adapts_decodes_and_reports(adapted):
    recipe, ref, ref_state, proc = adapted
    exp = recipe / "exp" / f"adapt_{ref.name[len('asr_'):]}_tiny_field_adapt"
    assert (exp / ".done.stage16").is_file(), proc.stderr[-3000:]
    tag = "decode_ctc_greedy_asr_model_valid.loss.ave"
    for dset in ("field_test", "test"):
        hyp = read_kv(exp / tag / dset / "text", allow_duplicates=True)
        assert list(hyp) == list(read_kv(recipe / "dump/raw" / dset / "text"))
        assert (exp / tag / dset / "score_wer" / "result.txt").is_file()
    table = (exp / "adapt_results.md").read_text()
    assert "|field_test|" in table and "|test|" in table
    test_row = next(r for r in table.splitlines() if r.startswith("|test|"))
    assert test_row.split("|")[2] != "-"  # the original's score of test (stage 13) is read
    # the original model is untouched; the frozen block kept its weights, another one moved
    after_ref = torch.load(ref / "valid.loss.ave.pth")
    assert all(torch.equal(ref_state[k], after_ref[k]) for k in ref_state)
    adapted_state = torch.load(exp / "valid.loss.ave.pth")
    frozen = [k for k in ref_state if k.startswith("encoder.encoders.0.") and "running" not in k
              and ref_state[k].is_floating_point()]
    assert frozen and all(torch.equal(ref_state[k], adapted_state[k]) for k in frozen)
    moved = [k for k in ref_state if k.startswith("encoder.encoders.1.")]
    assert any(not torch.equal(ref_state[k], adapted_state[k]) for k in moved)
    # replay: the adaptation's training data hold original training utterances in every batch
    keys = list(read_kv(exp / "data/shape/train/speech_shape", allow_duplicates=True))
    assert any(k.startswith("replay-") for k in keys[:4])
    # the reference view: the original's config.yaml, the adapted weights
    assert (exp / "reference/config.yaml").read_text() == (ref / "config.yaml").read_text()
    assert torch.equal(torch.load(exp / "reference/valid.loss.ave.pth")["ctc.ctc_lo.weight"],
                       adapted_state["ctc.ctc_lo.weight"])
    rows = [r.split("\t") for r in (recipe / "exp/stage_times.tsv").read_text().splitlines()]
    assert [r[3] for r in rows if r[0] == "16"] == ["done"]


def test_stage16_reruns_resumes_refuses_and_overwrites(adapted):
    recipe, ref, _, _ = adapted
    exp = recipe / "exp" / f"adapt_{ref.name[len('asr_'):]}_tiny_field_adapt"
    proc = _run(recipe, *STAGE16)
    assert "is adapted: skipped" in proc.stderr
    # killed after training, before its marker: the re-run resumes and trains no further epoch
    (exp / ".done.stage16").unlink()
    n_epochs = (exp / "train.log").read_text().count("epoch results")
    proc = _run(recipe, *STAGE16)
    assert (exp / ".done.stage16").is_file()
    assert (exp / "train.log").read_text().count("epoch results") == n_epochs
    # other options: refused, nothing moved
    (recipe / "adapt_tiny.yaml").write_text(yaml.safe_dump({**ADAPT, "epochs": 2}))
    proc = _run(recipe, *STAGE16, check=False)
    assert proc.returncode != 0 and "other options" in proc.stderr and "--overwrite true" in proc.stderr
    assert not list(exp.parent.glob(exp.name + ".old.*"))
    # --overwrite true: redone, the old adaptation kept aside
    _run(recipe, *STAGE16, "--overwrite", "true")
    assert list(exp.parent.glob(exp.name + ".old.*")) and (exp / ".done.stage16").is_file()
    assert (exp / "train.log").read_text().count("epoch results") == 2
