"""A torch-free runtime for exported models: features, ONNX inference, CTC decoding, transcription.

Needs only numpy, soundfile and onnxruntime (and, from this project, :mod:`espnet_lw.decoding` and
:mod:`espnet_lw.utils.cli`); never torch or ESPnet, so it runs on a device without them.

The exported model it reads (written by the export stage, ``python -m espnet_lw.bin.export_onnx``)
is a directory, or a ``.zip`` of the same files::

    model.onnx        fp32: global MVN + encoder + linear CTC head + log_softmax
    model.int8.onnx   the same, onnxruntime dynamic quantization (MatMul weights, QInt8)
    tokens.txt        one token per line, line number = token id
    meta.json         {"format": "espnet_lw.onnx/1", "sample_rate", "blank_id", "token_type": char|bpe,
                       "space_token", "frontend": {ESPnet DefaultFrontend settings}, "subsampling",
                       "default_precision": int8|fp32, ...}

with the ONNX signature ``feats`` float32 [B, T, n_mels] (log-mel, not normalised), ``feats_lens``
int64 [B] -> ``log_probs`` float32 [B, T', V], ``out_lens`` int64 [B].

Modules: :mod:`~espnet_lw.runtime.features` (numpy log-mel = ESPnet's DefaultFrontend),
:mod:`~espnet_lw.runtime.resample` (any rate -> 16 kHz), :mod:`~espnet_lw.runtime.audio` (reading,
checks, long audio in windows cut at pauses), :mod:`~espnet_lw.runtime.model` (loading, inference,
decoding, token ids -> text) and :mod:`~espnet_lw.runtime.transcribe` (inputs -> transcripts).
``load_model`` and ``transcribe_file`` are importable from here (lazily: importing a submodule such
as ``features`` does not load onnxruntime).
"""

from __future__ import annotations

import importlib

__all__ = ["load_model", "transcribe_file"]

_LAZY = {"load_model": "espnet_lw.runtime.model", "transcribe_file": "espnet_lw.runtime.transcribe"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
