"""Tiny ESPnet ASR model configs and statistics files shared by the model tests
(test_encrl_model.py, test_import_reference.py)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from espnet_lw.tasks.asr import LWASRTask

_DEFAULTS = None


def asr_config(tokens, frontend: dict, encoder: dict, /, **over) -> dict:
    """A complete ESPnet ASR config, as training writes it, of a CTC-only Conformer with global MVN
    (every option at the task's default unless set here or in ``over``; ``frontend`` and ``encoder``
    are the default frontend_conf / encoder_conf, which ``over`` may replace)."""
    global _DEFAULTS
    if _DEFAULTS is None:
        _DEFAULTS = vars(LWASRTask.get_parser().parse_args(["--token_list", "x", "--output_dir", "x"]))
    conf = copy.deepcopy(_DEFAULTS)
    conf.update(
        token_list=list(tokens), frontend="default", frontend_conf=dict(frontend), specaug=None,
        normalize="global_mvn", encoder="conformer", encoder_conf=dict(encoder), decoder=None,
        model="espnet", model_conf={"ctc_weight": 1.0},
    )
    conf.update(over)
    return conf


def write_stats(path: Path, dim: int = 8, seed: int = 0) -> Path:
    """A feats_stats.npz as ESPnet's collect_stats writes it (random means, unit-ish variances)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    np.savez(path, count=np.array(100.0), sum=rng.normal(size=dim) * 100, sum_square=np.full(dim, 400.0))
    return path
