"""A tiny exported model (the espnet_lw.onnx/1 format) for runtime tests, built with onnx's helper API.

The network keeps every 4th feature frame (subsampling 4), scores each kept frame with one
MatMul + bias and applies log_softmax. Token "a" wins where the frame's mean log-mel is above
``threshold`` (speech), ``<blank>`` elsewhere (silence, whose log-mel sits at log(1e-10) = -23),
so speech transcribes to runs of "a" and silence to nothing.
"""

from __future__ import annotations

import json
import logging
import shutil
import zipfile
from pathlib import Path

import numpy as np

TOKENS = ["<blank>", "<unk>", "<space>", "a", "b", "<sos/eos>"]
N_MELS = 80


def build_graph(threshold: float = -12.0, n_mels: int = N_MELS, vocab: int = len(TOKENS)):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.zeros((n_mels, vocab), dtype=np.float32)
    w[:, TOKENS.index("a")] = 1.0 / n_mels
    b = np.full(vocab, -100.0, dtype=np.float32)
    b[TOKENS.index("<blank>")] = threshold
    b[TOKENS.index("a")] = 0.0
    inits = [
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(b, "bias"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "starts"),
        numpy_helper.from_array(np.array([np.iinfo(np.int64).max], dtype=np.int64), "ends"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
        numpy_helper.from_array(np.array([4], dtype=np.int64), "steps"),
        numpy_helper.from_array(np.array(3, dtype=np.int64), "three"),
        numpy_helper.from_array(np.array(4, dtype=np.int64), "four"),
    ]
    nodes = [
        helper.make_node("Slice", ["feats", "starts", "ends", "axes", "steps"], ["sub"]),
        helper.make_node("MatMul", ["sub", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "bias"], ["logits"]),
        helper.make_node("LogSoftmax", ["logits"], ["log_probs"], axis=-1),
        helper.make_node("Add", ["feats_lens", "three"], ["lens3"]),
        helper.make_node("Div", ["lens3", "four"], ["out_lens"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_ctc",
        [helper.make_tensor_value_info("feats", TensorProto.FLOAT, ["B", "T", n_mels]),
         helper.make_tensor_value_info("feats_lens", TensorProto.INT64, ["B"])],
        [helper.make_tensor_value_info("log_probs", TensorProto.FLOAT, ["B", "T_out", vocab]),
         helper.make_tensor_value_info("out_lens", TensorProto.INT64, ["B"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def meta(default_precision: str = "fp32", token_type: str = "char") -> dict:
    return {
        "format": "espnet_lw.onnx/1",
        "sample_rate": 16000,
        "blank_id": 0,
        "token_type": token_type,
        "space_token": "<space>",
        "frontend": {"type": "fbank", "n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": N_MELS,
                     "fmin": 0, "fmax": 8000, "window": "hann", "center": True, "normalized": False,
                     "onesided": True, "log_floor": 1e-10, "mel": "librosa-slaney"},
        "subsampling": 4,
        "default_precision": default_precision,
        "model": {"name": "tiny_onnx", "num_blocks": 0, "output_size": N_MELS, "params": N_MELS * len(TOKENS)},
    }


def write_model(out: Path, default_precision: str = "fp32", threshold: float = -12.0) -> Path:
    """Write model.onnx, model.int8.onnx (onnxruntime dynamic quantization), tokens.txt, meta.json."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(build_graph(threshold), out / "model.onnx")
    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # quantize_dynamic's advice to pre-process the model
    try:
        quantize_dynamic(str(out / "model.onnx"), str(out / "model.int8.onnx"), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul"])
    finally:
        root.setLevel(level)
    (out / "tokens.txt").write_text("\n".join(TOKENS) + "\n", encoding="utf-8")
    (out / "meta.json").write_text(json.dumps(meta(default_precision), indent=2), encoding="utf-8")
    return out


def zip_model(model_dir: Path, zip_path: Path, prefix: str = "") -> Path:
    """A .zip of an exported model directory, its files under ``prefix`` ('' = top level)."""
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(Path(model_dir).iterdir()):
            z.write(f, f"{prefix}/{f.name}" if prefix else f.name)
    return zip_path


def copy_model(model_dir: Path, dst: Path) -> Path:
    shutil.copytree(model_dir, dst)
    return dst
