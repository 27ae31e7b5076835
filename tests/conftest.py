"""Shared pytest fixtures: a tiny mini_synth corpus (built once per session) and
a helper that turns one of its splits into a Kaldi-style data directory.

Under CI (``LW_REQUIRE_TOOLS=1``, set by .ci/run) a test skipped because a required system tool is
missing (sclite, sox, flac, espeak-ng, flite: :data:`REQUIRED_TOOLS_RE` on the skip reason) fails
instead, so the suite cannot go green with its important tests skipped. Locally such skips stay skips.
The ``slow`` marker (pytest.ini) lets a developer run ``-m "not slow"``; CI runs everything."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest


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
