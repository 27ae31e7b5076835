"""The benchmark's arithmetic and checks that must not fool it: the paired bootstrap, per-utterance word
errors, the time to a dev target (a scratch curve that crosses its own target before its last epoch;
everything an EncRL / KD student pays), the refusal of a dirty tree and the marking of ``--allow_dirty``.

Pure python on synthetic records and a throw-away git repository: a few seconds in all.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from espnet_lw.benchmark import bootstrap, compare, provenance
from espnet_lw.benchmark.systems import System
from espnet_lw.utils.cli import UserError


# ------------------------------------------------------------------------------ word errors
@pytest.mark.parametrize("ref,hyp,errors", [
    ("a b c d", "a b c d", 0),
    ("a b c d", "a x c d", 1),  # one substitution
    ("a b c d", "a c d", 1),  # one deletion
    ("a b c d", "a b b c d", 1),  # one insertion
    ("a b c d", "", 4),
    ("", "a b", 2),
    ("a b c d e", "b c d e f", 2),  # deletion + insertion beat 5 substitutions
])
def test_word_errors(ref, hyp, errors):
    assert bootstrap.word_errors(ref.split(), hyp.split()) == errors


def test_utterance_errors_agree_with_sclite(tmp_path):
    """The summed per-utterance errors equal sclite's own total on the same trn files."""
    from espnet_lw.scoring import find_sclite, score

    try:
        find_sclite()
    except UserError:
        pytest.skip("needs sclite (Debian package sctk)")
    refs = ["the cat sat on the mat", "a b c d", "one two three", "hello world", "x y z w v"]
    hyps = ["the cat sat on mat", "a x c d e", "", "hello big world", "y z w v u"]
    (tmp_path / "ref").write_text("".join(f"u{i} {t}\n" for i, t in enumerate(refs)))
    (tmp_path / "hyp").write_text("".join(f"u{i} {t}\n" for i, t in enumerate(hyps)))
    res = score(tmp_path / "ref", tmp_path / "hyp", tmp_path, score_types=("wer",), detail=False)["wer"]
    errs = bootstrap.utterance_errors(tmp_path / "score_wer")
    assert sum(n for _, n in errs.values()) == 6 + 4 + 3 + 2 + 5
    assert 100.0 * sum(e for e, _ in errs.values()) / 20 == pytest.approx(res.err, abs=0.05)
    assert next(v for k, v in errs.items() if k.endswith("u2")) == (3, 3)  # an empty hypothesis: all deletions


# ------------------------------------------------------------------------------ bootstrap
def utts(errors, nref=10):
    return {f"u{i:03d}": (e, nref) for i, e in enumerate(errors)}


def test_bootstrap_interval_excludes_zero_for_a_clear_difference():
    a = utts([3, 2, 4, 3, 3, 2, 4, 3] * 25)  # 30 % WER
    b = utts([1, 1, 2, 0, 1, 2, 1, 0] * 25)  # 10 % WER, better on every utterance
    r = bootstrap.paired_bootstrap(a, b, resamples=1000, seed=0)
    assert r.delta == pytest.approx(30.0 - 10.0)
    assert 0 < r.low < r.delta < r.high and r.excludes_zero
    assert r.n_utts == 200 and r.n_words == 2000 and r.resamples == 1000
    again = bootstrap.paired_bootstrap(a, b, resamples=1000, seed=0)
    assert (again.low, again.high) == (r.low, r.high)  # fixed seed: the same interval


def test_bootstrap_interval_includes_zero_for_noise():
    import numpy as np

    rng = np.random.default_rng(1)
    base = rng.integers(0, 5, size=200)
    a = utts(list(base))
    b = utts(list(base[::-1]))  # the same errors, other utterances: equal WER, no real difference
    r = bootstrap.paired_bootstrap(a, b, resamples=1000, seed=0)
    assert r.delta == pytest.approx(0.0)
    assert r.low < 0 < r.high and not r.excludes_zero
    assert r.to_dict()["excludes_zero"] is False


def test_bootstrap_pairs_by_utterance_and_checks_references():
    a = {"x": (1, 4), "y": (0, 4)}
    b = {"y": (1, 4), "z": (0, 4)}
    r = bootstrap.paired_bootstrap(a, b, resamples=50)
    assert r.n_utts == 1 and r.delta == pytest.approx(-25.0)  # only "y" is shared
    assert bootstrap.paired_bootstrap({"x": (1, 4)}, {"z": (1, 4)}) is None
    with pytest.raises(ValueError, match="different references"):
        bootstrap.paired_bootstrap({"x": (1, 4)}, {"x": (1, 5)})


def test_mean_errors_over_seeds():
    m = bootstrap.mean_errors([{"a": (2, 5), "b": (0, 3)}, {"a": (4, 5), "b": (1, 3), "c": (1, 1)}])
    assert m == {"a": (3.0, 5), "b": (0.5, 3)}


# ------------------------------------------------------------------------------ time to target
def run(name, kind, wers, secs, seed=1, encrl_secs=None, encrl_epochs=None, encrl_updates=None, share=0.0,
        updates=100, final=None):
    return System(name=name, kind=kind, ratio=0.667, group=name.rsplit("_seed", 1)[0], seed=seed,
                  epochs=len(secs), seconds_per_epoch=secs, updates_per_epoch=[updates] * len(secs),
                  wer_per_epoch={"dev": wers}, wer=final or {}, encrl_seconds=encrl_secs, encrl_epochs=encrl_epochs,
                  encrl_updates=encrl_updates, cache_share_seconds=share, train_audio_seconds=1000.0,
                  loss="clip+mse" if kind == "encrl" else None)


def test_scratch_reaches_its_own_target_before_its_last_epoch():
    """The issue's case: scratch's last-epoch dev WER is the target, but its curve got there at epoch 3 of 8;
    its cost is 3 epochs, not 8, and EncRL's includes its cache share and every EncRL epoch."""
    scratch = run("r67_scratch_seed1", "scratch", [90, 70, 44, 46, 45, 47, 45, 44], [100.0] * 8)
    encrl = run("r67_encrl_seed1", "encrl", [60, 50, 43, 42, 41, 40, 40], [50.0] * 7,
                encrl_secs=80.0, encrl_epochs=1, encrl_updates=100, share=30.0)
    comp = compare.compare_ratio({"r67_scratch": [scratch], "r67_encrl": [encrl]}, "dev", [], n_cache_users=2)
    assert comp["target"]["wer"] == 44 and comp["target"]["epoch"] == 8
    rows = {r["name"]: r for r in comp["systems"]}
    sc = rows["r67_scratch"]["cost_to_target"]
    assert sc["epoch"] == 3 and sc["wall_seconds"] == 300.0 and sc["updates"] == 300
    assert sc["audio_seconds"] == 3000.0
    ec = rows["r67_encrl"]["cost_to_target"]
    # cache share 30 s + EncRL 80 s (100 updates, one pass of audio) + 3 fine-tune epochs of 50 s
    assert ec["epoch"] == 3 and ec["wall_seconds"] == 30.0 + 80.0 + 150.0 and ec["updates"] == 100 + 300
    assert ec["audio_seconds"] == 1000.0 * (1 + 0.5) + 3000.0  # EncRL epoch + half a pass (2 cache users)
    assert ec["finetune_only_wall_seconds"] == 150.0
    assert rows["r67_encrl"]["speedup_vs_scratch"] == {"wall_seconds": round(300 / 260, 3),
                                                      "updates": round(300 / 400, 3), "audio_seconds": 0.667}
    # the speed-up is against scratch's own crossing (300 s), not its 8 epochs (800 s)
    assert rows["r67_scratch"]["speedup_vs_scratch"]["wall_seconds"] == 1.0


def test_target_and_cost_over_seeds():
    """Target: mean of the scratch seeds' last epochs; cost: the mean curve's crossing, the mean cost there."""
    s1 = run("s_seed1", "scratch", [80, 52, 48], [10.0] * 3, seed=1, final={"test": 40.0})
    s2 = run("s_seed2", "scratch", [90, 46, 52], [20.0] * 3, seed=2, final={"test": 44.0})
    k1 = run("k_seed1", "kd", [60, 49, 45], [10.0] * 3, seed=1, share=5.0, final={"test": 30.0})
    comp = compare.compare_ratio({"s": [s1, s2], "k": [k1]}, "dev", [], n_cache_users=1)
    t = comp["target"]
    assert t["wer"] == 50.0 and t["seeds"] == [1, 2] and "mean over 2 scratch seeds" in t["how"]
    rows = {r["name"]: r for r in comp["systems"]}
    c = rows["s"]["cost_to_target"]
    assert c["epoch"] == 2 and c["wall_seconds"] == (20.0 + 40.0) / 2  # mean curve 85, 49, 50
    assert [p["epoch"] for p in c["per_seed"]] == [3, 2]  # seed 1 alone only crosses at its last epoch
    assert rows["s"]["wer"]["test"]["mean"] == 42.0 and rows["s"]["wer"]["test"]["std"] == pytest.approx(2.828, 1e-3)
    assert rows["k"]["cost_to_target"]["wall_seconds"] == 5.0 + 20.0  # the cache share counts for KD too
    assert rows["k"]["wer"]["test"]["std"] is None and rows["k"]["wer"]["test"]["n"] == 1


def test_a_system_that_never_reaches_the_target():
    s = run("s_seed1", "scratch", [80, 50], [10.0] * 2)
    p = run("p_seed1", "pruned", [70, 60], [10.0] * 2)
    comp = compare.compare_ratio({"s": [s], "p": [p]}, "dev", [], n_cache_users=0)
    row = next(r for r in comp["systems"] if r["name"] == "p")
    assert row["cost_to_target"]["reached"] is False and row["cost_to_target"]["wall_seconds"] is None
    assert row["speedup_vs_scratch"]["wall_seconds"] is None


def test_undecoded_last_epoch_gives_no_target():
    s = run("s_seed1", "scratch", [80, 50, None], [10.0] * 3)
    comp = compare.compare_ratio({"s": [s]}, "dev", [], n_cache_users=0)
    assert comp["target"]["wer"] is None and "not available" in comp["target"]["how"]


# ------------------------------------------------------------------------------ provenance
def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("needs git")
    repo = tmp_path / "repo"
    recipe = repo / "egs2" / "c" / "lw1"
    (recipe / "conf").mkdir(parents=True)
    (recipe / "conf" / "student_r67.yaml").write_text("reduction: 0.667\n")
    (recipe / "RESULTS.md").write_text("# R\n")
    (repo / ".gitignore").write_text("egs2/*/lw1/exp/\n")
    git(repo, "init", "-q")
    git(repo, "-c", "user.email=a@b", "-c", "user.name=a", "add", ".")
    git(repo, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "-m", "x")
    return recipe


def test_clean_tree_is_recorded(repo):
    exp = repo / "exp"
    # the benchmark's own outputs (stage 13's RESULTS.md, the report's files) do not make the tree dirty
    (repo / "RESULTS.md").write_text("# R\nnew tables\n")
    (repo / "logs" / "benchmark").mkdir(parents=True)
    (repo / "logs" / "benchmark" / "a.tsv").write_text("x\n")
    rec = provenance.check_run(repo, exp, "local/benchmark.sh", allow_dirty=False)
    assert rec["clean"] and rec["commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert rec["runs"][0]["machine"]["cpu_count"] >= 1 and rec["runs"][0]["command"] == "local/benchmark.sh"
    # resuming at the same commit is fine and appends a run
    rec = provenance.check_run(repo, exp, "local/benchmark.sh", allow_dirty=False)
    assert len(rec["runs"]) == 2 and rec["clean"]
    # the report's code from this checkout too (the tests' espnet_lw lives in another one: see below)
    prov = provenance.check_report(repo, exp, "report", allow_dirty=False, code_state=provenance.git_state(repo))
    assert prov["clean"] and prov["warnings"] == [] and prov["command"] == "local/benchmark.sh"
    # read from the running package: this repo's espnet_lw is another checkout, which the report names
    # (and, where that checkout has uncommitted changes, as when a developer runs the tests, refuses)
    code = provenance.code_checkout_state(provenance.git_state(repo))
    if code is not None and not code["clean"]:
        with pytest.raises(UserError, match="another checkout"):
            provenance.check_report(repo, exp, "report", allow_dirty=False)
    prov = provenance.check_report(repo, exp, "report", allow_dirty=code is not None and not code["clean"])
    here = provenance.git_state(Path(provenance.__file__).parent)["commit"]
    assert here is None or any(f"code that wrote it is at commit {here}" in w for w in prov["warnings"])


def test_dirty_tree_is_refused_unless_allowed(repo):
    exp = repo / "exp"
    (repo / "conf" / "student_r67.yaml").write_text("reduction: 0.5\n")  # a config edited, not committed
    with pytest.raises(UserError, match="refusing to benchmark: uncommitted changes.*student_r67.yaml"):
        provenance.check_run(repo, exp, "cmd", allow_dirty=False)
    assert not (exp / "benchmark" / "provenance.json").exists()
    (repo / "conf" / "new.yaml").write_text("x: 1\n")  # untracked files count too
    state = provenance.git_state(repo, provenance.RECIPE_OUTPUTS)
    assert any("new.yaml" in d for d in state["dirty"])
    rec = provenance.check_run(repo, exp, "cmd", allow_dirty=True)
    assert rec["clean"] is False and rec["runs"][0]["allow_dirty"] is True
    assert any("student_r67.yaml" in w for w in rec["warnings"])
    saved = json.loads((exp / "benchmark" / "provenance.json").read_text())
    assert saved["clean"] is False
    # the report refuses a dirty tree too; allowed, it carries the run's warnings
    with pytest.raises(UserError, match="refusing to write the report"):
        provenance.check_report(repo, exp, "report", allow_dirty=False)
    prov = provenance.check_report(repo, exp, "report", allow_dirty=True)
    assert prov["clean"] is False and any(w.startswith("run: uncommitted") for w in prov["warnings"])
    from espnet_lw.benchmark.report import warning_lines

    text = "\n".join(warning_lines(prov))
    assert "WARNING: not one clean benchmark run" in text and "student_r67.yaml" in text


def test_other_commit_and_foreign_models_are_refused(repo):
    exp = repo / "exp"
    provenance.check_run(repo, exp, "cmd", allow_dirty=False)
    (repo / "conf" / "student_r67.yaml").write_text("reduction: 0.5\n")
    git(repo, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "-am", "y")
    with pytest.raises(UserError, match="started at commit"):
        provenance.check_run(repo, exp, "cmd", allow_dirty=False)
    # models trained before any record: refused as well
    other = repo / "exp2"
    (other / "asr_ref").mkdir(parents=True)
    (other / "asr_ref" / ".done.stage11").touch()
    with pytest.raises(UserError, match="no provenance record"):
        provenance.check_run(repo, other, "cmd", allow_dirty=False)


def test_outside_git_is_not_clean(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    state = provenance.git_state(tmp_path)
    assert state["commit"] is None and not state["clean"]
