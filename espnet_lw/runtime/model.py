"""Load an exported model (the format is described in :mod:`espnet_lw.runtime`) and run it.

An exported model is a directory -- or a ``.zip`` of one -- with ``model.onnx`` (fp32),
``model.int8.onnx`` (dynamic int8), ``tokens.txt`` and ``meta.json``. :func:`load_model` returns
an :class:`OnnxCtcModel`: features (:class:`~espnet_lw.runtime.features.Fbank`, configured from
meta.json), an onnxruntime session (feats -> log_probs) and CTC decoding
(:mod:`espnet_lw.decoding`), token ids -> text.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import onnxruntime as ort

from espnet_lw.decoding import greedy_search, prefix_beam_search
from espnet_lw.runtime.features import Fbank, FbankConfig
from espnet_lw.utils.cli import UserError

logger = logging.getLogger(__name__)

FORMAT = "espnet_lw.onnx/1"
MODEL_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
PRECISIONS = tuple(MODEL_FILES)
MIN_SECONDS = 0.25  # shorter waves are zero-padded to this (26 frames: enough for 4x, 6x or 8x subsampling)
EXPORT_FIX = "give a directory written by `python -m espnet_lw.bin.export_onnx` (or a .zip of it)"


@dataclass(frozen=True)
class DecodeOptions:
    """How log-posteriors become token ids: ``greedy`` or prefix ``beam`` search."""

    method: str = "greedy"
    beam_size: int = 10

    def __post_init__(self):
        if self.method not in ("greedy", "beam"):
            raise UserError(f"unknown decoding method {self.method!r}", fix="use greedy or beam")
        if self.beam_size < 1:
            raise UserError(f"beam size must be >= 1, got {self.beam_size}")


# --------------------------------------------------------------------------
# Reading the model files (directory or zip)
# --------------------------------------------------------------------------
class _ModelFiles:
    """Read the files of an exported model from a directory or a zip (meta.json anywhere in it)."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        p = Path(path)
        self._zip = None
        if p.is_dir():
            self._dir = p
            if not (p / "meta.json").is_file():
                raise UserError("not an exported model: no meta.json in this directory", self.path, EXPORT_FIX)
        elif p.is_file():
            if not zipfile.is_zipfile(p):
                raise UserError("not an exported model: neither a directory nor a .zip", self.path, EXPORT_FIX)
            self._zip = zipfile.ZipFile(p)
            metas = [n for n in self._zip.namelist() if PurePosixPath(n).name == "meta.json"]
            if len(metas) != 1:
                what = "no meta.json" if not metas else f"{len(metas)} meta.json files"
                hint = ("; this looks like an ESPnet pack (a torch model), not an ONNX export"
                        if any(n.endswith(".pth") for n in self._zip.namelist()) else "")
                raise UserError(f"not an exported model: {what} in the zip{hint}", self.path, EXPORT_FIX)
            self._prefix = str(PurePosixPath(metas[0]).parent)
        else:
            raise UserError("no such model directory or zip", self.path, EXPORT_FIX)

    def exists(self, name: str) -> bool:
        if self._zip is None:
            return (self._dir / name).is_file()
        return self._member(name) in self._zip.namelist()

    def _member(self, name: str) -> str:
        return name if self._prefix in ("", ".") else f"{self._prefix}/{name}"

    def where(self, name: str) -> str:
        return str(self._dir / name) if self._zip is None else f"{self.path}:{self._member(name)}"

    def read_bytes(self, name: str) -> bytes:
        if not self.exists(name):
            raise UserError(f"the model has no {name}", self.path, EXPORT_FIX)
        if self._zip is None:
            return (self._dir / name).read_bytes()
        return self._zip.read(self._member(name))

    def onnx_source(self, name: str) -> str | bytes:
        """A path onnxruntime can open (directory) or the file's bytes (zip)."""
        if not self.exists(name):
            raise UserError(f"the model has no {name}", self.path, EXPORT_FIX)
        return str(self._dir / name) if self._zip is None else self.read_bytes(name)

    def close(self):
        if self._zip is not None:
            self._zip.close()


def _read_meta(files: _ModelFiles) -> dict:
    try:
        meta = json.loads(files.read_bytes("meta.json").decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"meta.json is not valid JSON: {e}", files.where("meta.json")) from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise UserError(f"unsupported model format {got!r} (this runtime reads {FORMAT!r})",
                        files.where("meta.json"), EXPORT_FIX)
    return meta


def _read_tokens(files: _ModelFiles) -> list[str]:
    text = files.read_bytes("tokens.txt").decode("utf-8")
    tokens = text.split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    tokens = [t.rstrip("\r") for t in tokens]
    if not tokens:
        raise UserError("tokens.txt is empty", files.where("tokens.txt"))
    return tokens


# --------------------------------------------------------------------------
# Token ids -> text
# --------------------------------------------------------------------------
class TokenText:
    """Turn token ids into text as ESPnet's char / BPE tokenizers do.

    ``char``: tokens are concatenated, the space token (``<space>``) is a space. ``bpe``
    (sentencepiece): tokens are concatenated and ``▁`` starts a word. ``<blank>`` and
    ``<sos/eos>`` are dropped; ``<unk>`` stays in the text as ``<unk>`` (as ESPnet's char
    tokenizer writes it; sentencepiece itself would write `` ⁇ ``). Runs of spaces become one, as
    in ``espnet_lw.inference.ids_to_text``.
    """

    DROP = ("<blank>", "<sos/eos>", "<sos>", "<eos>", "<pad>")

    def __init__(self, tokens: list[str], token_type: str, blank_id: int = 0, space_token: str = "<space>"):
        if token_type not in ("char", "bpe"):
            raise UserError(f"unsupported token_type {token_type!r} in meta.json (char or bpe)")
        self.tokens, self.token_type, self.blank_id = tokens, token_type, blank_id
        self.space_token = space_token

    def __call__(self, ids: list[int]) -> str:
        pieces = []
        for i in ids:
            if i == self.blank_id or not 0 <= i < len(self.tokens):
                continue
            tok = self.tokens[i]
            if tok in self.DROP:
                continue
            if self.token_type == "char":
                pieces.append(" " if tok == self.space_token else tok)
            else:
                pieces.append(tok.replace("\u2581", " "))
        return " ".join("".join(pieces).split())


# --------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------
OPTIMIZATION = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
}


def session_options(threads: int, spinning: bool = False, optimization: str = "all") -> ort.SessionOptions:
    """onnxruntime options: ``threads`` intra-op threads, sequential, no busy-waiting, no memory patterns.

    Measured on the 2-core machine of this project (shared and loaded, so CPU times are rough):

    * ``spinning=False`` (``session.intra_op.allow_spinning = 0``) lets idle pool threads sleep
      instead of busy-waiting for the next run, so a 2-thread run does not burn a second core
      while the runtime reads audio, computes features or decodes. On a 12-layer 256x1024 MatMul
      stack (5 s of frames, 2 ms of other work between runs) at 2 threads, spinning took twice the
      CPU time per run (41 vs 22 ms) and was slower (103 vs 56 ms median); at 1 thread there are
      no pool threads and it makes no difference.
    * ``enable_mem_pattern = False``: onnxruntime plans (and keeps) one memory block per distinct
      input shape, and every utterance has its own length. On a 1.6 M-parameter 2-block Conformer
      (int8) decoding 5, 3, 5, 7 s the process peaked at 140 MiB with patterns and 113 MiB
      without (173 vs 247 MiB once a 20 s window had run), at the same CPU time per run.
    * ``optimization``: ``all`` (default) vs ``basic`` -- basic peaked 13 MiB lower on that
      model at a similar, perhaps 10 % higher, CPU time; a knob for memory-bound devices.
    """
    if optimization not in OPTIMIZATION:
        raise UserError(f"unknown graph optimization level {optimization!r}", fix=f"use one of {sorted(OPTIMIZATION)}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, int(threads))
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = OPTIMIZATION[optimization]
    so.enable_mem_pattern = False
    so.log_severity_level = 3
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return so


class OnnxCtcModel:
    """An exported CTC model: ``transcribe_samples(wave)`` -> text; ``log_probs(feats)``; ``decode``."""

    def __init__(self, path: str | os.PathLike, precision: str | None = None, threads: int = 1,
                 decode: DecodeOptions | None = None, spinning: bool = False, optimization: str = "all"):
        files = _ModelFiles(path)
        try:
            self.path = files.path
            self.meta = meta = _read_meta(files)
            self.precision = precision or meta.get("default_precision", "fp32")
            if self.precision not in MODEL_FILES:
                raise UserError(f"unknown precision {self.precision!r}", fix="use fp32 or int8")
            self.sample_rate = int(meta.get("sample_rate", 16000))
            self.blank_id = int(meta.get("blank_id", 0))
            self.subsampling = int(meta.get("subsampling", 4))
            self.min_frames = int(meta.get("min_frames", 7))
            try:
                self.fbank = Fbank(FbankConfig.from_meta(meta.get("frontend") or {}, self.sample_rate))
            except ValueError as e:
                raise UserError(f"meta.json frontend: {e}", files.where("meta.json")) from e
            self.tokens = _read_tokens(files)
            self.text = TokenText(self.tokens, meta.get("token_type", "char"), self.blank_id,
                                  meta.get("space_token", "<space>"))
            self.decode_options = decode or DecodeOptions()
            self.threads = threads
            name = MODEL_FILES[self.precision]
            try:
                self.session = ort.InferenceSession(files.onnx_source(name),
                                                    session_options(threads, spinning, optimization),
                                                    providers=["CPUExecutionProvider"])
            except UserError:
                raise
            except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
                raise UserError(f"onnxruntime cannot load {name}: {' '.join(str(e).split())}",
                                files.where(name)) from e
        finally:
            files.close()
        self._check_signature()

    def _check_signature(self):
        ins = {i.name for i in self.session.get_inputs()}
        outs = [o.name for o in self.session.get_outputs()]
        if not {"feats", "feats_lens"} <= ins or "log_probs" not in outs:
            raise UserError(f"the ONNX graph has inputs {sorted(ins)} and outputs {outs}; expected "
                            "feats, feats_lens -> log_probs, out_lens", self.path, EXPORT_FIX)
        self._outputs = ["log_probs", "out_lens"] if "out_lens" in outs else ["log_probs"]

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def features(self, wave: np.ndarray) -> np.ndarray:
        """Log-mel features (frames, n_mels) of a mono waveform at ``sample_rate``."""
        return self.fbank(wave)

    def log_probs(self, feats: np.ndarray) -> np.ndarray:
        """CTC log-posteriors (frames', vocab) of one utterance's features."""
        feats = np.ascontiguousarray(feats, dtype=np.float32)[None]
        lens = np.array([feats.shape[1]], dtype=np.int64)
        try:
            res = self.session.run(self._outputs, {"feats": feats, "feats_lens": lens})
        except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types
            raise UserError(f"the network failed on {feats.shape[1]} feature frames: {' '.join(str(e).split())}",
                            self.path) from e
        lp = res[0][0]
        if len(res) > 1:
            lp = lp[: int(res[1][0])]
        return lp

    def decode(self, log_probs: np.ndarray) -> list[int]:
        opts = self.decode_options
        if len(log_probs) == 0:
            return []
        if opts.method == "greedy":
            return greedy_search(log_probs, blank=self.blank_id)
        return prefix_beam_search(log_probs, beam_size=opts.beam_size, blank=self.blank_id)[0][0]

    def transcribe_samples(self, wave: np.ndarray) -> str:
        """Text of one mono float32 waveform at ``sample_rate`` (short enough for one pass).

        A wave shorter than ``MIN_SECONDS`` (the tail of a long recording, a click) is padded with
        zeros to that length: the convolutional subsampling needs a few frames (meta.json's
        ``min_frames``) to give any output.
        """
        wave = np.asarray(wave, dtype=np.float32)
        need = max(int(MIN_SECONDS * self.sample_rate), self.min_frames * self.fbank.config.hop_length)
        if len(wave) < need:
            wave = np.concatenate([wave, np.zeros(need - len(wave), dtype=np.float32)])
        return self.text(self.decode(self.log_probs(self.features(wave))))


def load_model(path: str | os.PathLike, precision: str | None = None, threads: int = 1,
               decode: DecodeOptions | None = None, spinning: bool = False, optimization: str = "all") -> OnnxCtcModel:
    """Load an exported model directory or zip (see :class:`OnnxCtcModel` and :func:`session_options`)."""
    return OnnxCtcModel(path, precision=precision, threads=threads, decode=decode, spinning=spinning,
                        optimization=optimization)
