"""Shared pytest fixtures: a tiny mini_synth corpus (built once per session) and
a helper that turns one of its splits into a Kaldi-style data directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def _need_tts() -> None:
    missing = [b for b in ("espeak-ng", "sox") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"needs {' and '.join(missing)} (Debian packages espeak-ng sox flac)")


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
