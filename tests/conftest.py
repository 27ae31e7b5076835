"""Shared pytest fixtures: a tiny mini_synth corpus (built once per session), a helper that turns one
of its splits into a Kaldi-style data directory, and one tiny run of the mini_synth recipe's stages 1-13
(once per session) that the driver's test modules copy.

Under CI (``LW_REQUIRE_TOOLS=1``, set by .ci/run) a test skipped because a required system tool is
missing (sclite, sox, flac, espeak-ng, flite: :data:`REQUIRED_TOOLS_RE` on the skip reason) fails
instead, so the suite cannot go green with its important tests skipped. Locally such skips stay skips.
The ``slow`` marker (pytest.ini) lets a developer run ``-m "not slow"``; CI runs everything."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

# Under pytest-xdist (the README's test command: ``-n auto --dist loadfile``) the workers share the cores:
# each worker's torch, and every process it starts (recipe runs, trainers), gets its share of threads
# instead of all of them.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT", "").isdigit():
    _threads = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, _threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def _need_tts() -> None:
    missing = [b for b in ("espeak-ng", "flite", "sox") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"needs {' and '.join(missing)} (Debian packages espeak-ng flite sox flac wordnet-base)")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """Path of a tiny mini_synth corpus (size=tiny, seed=0), built once per session."""
    _need_tts()
    from espnet_lw.data.synth import build_corpus

    out = tmp_path_factory.mktemp("mini_synth") / "MiniSynth"
    build_corpus(out, size="tiny", seed=0, nj=2)
    return out


@pytest.fixture(scope="session")
def tiny_mini_synth(tmp_path_factory):
    """Stages 1-13 of the mini_synth recipe at tiny size (recipe_runs.MINI_TINY_ARGS), run once per session
    for every test module of the driver: a ``recipe_runs.FullRun``. Read it; to run anything in it, take a
    copy first (``recipe_runs.clone_recipe_run(run.dir, dst)``)."""
    _need_tts()
    from recipe_runs import mini_synth_tiny_run

    return mini_synth_tiny_run(tmp_path_factory.mktemp("tiny_mini_synth"))


@pytest.fixture
def mini_reference_config(tmp_path):
    """``(path, dict)`` of conf/reference_mini.yaml completed as training writes it (fs, a token list,
    global MVN): the reference the shipped student configs are made from."""
    import yaml

    ref = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf" / "reference_mini.yaml").read_text())
    ref["frontend_conf"]["fs"] = "16k"
    ref["token_list"] = ["<blank>", "<unk>", "A", "<sos/eos>"]
    ref["normalize"] = "global_mvn"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(ref))
    return path, ref


@pytest.fixture
def make_tiny_data_dir(tiny_corpus, tmp_path):
    """Factory: ``make_tiny_data_dir("dev")`` -> Kaldi data dir of that tiny split."""
    from espnet_lw.data.librispeech import prepare

    def _make(split: str = "train", name: str | None = None) -> Path:
        dst = tmp_path / "data" / (name or split)
        prepare(tiny_corpus / split, dst)
        return dst

    return _make


# ------------------------------------------------------------------------------ CI: missing tools fail
#: a skip whose reason names one of these tools is a failure under LW_REQUIRE_TOOLS=1
REQUIRED_TOOLS_RE = re.compile(r"(?<![\w-])(sclite|sctk|sox|flac|espeak-ng|flite)(?![\w-])")


def require_tools() -> bool:
    """Whether skips for missing tools fail (``LW_REQUIRE_TOOLS`` set to anything but ``""``/``0``)."""
    return os.environ.get("LW_REQUIRE_TOOLS", "") not in ("", "0")


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr or "")


def _fail_tool_skip(report) -> None:
    if report.skipped and require_tools() and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if REQUIRED_TOOLS_RE.search(reason):
            report.outcome = "failed"
            report.longrepr = (f"LW_REQUIRE_TOOLS=1: skipped for a missing tool, which CI does not allow: {reason}\n"
                               "install the tools (egs2/TEMPLATE/lw1/install.sh) or unset LW_REQUIRE_TOOLS locally")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_tool_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_tool_skip(outcome.get_result())
