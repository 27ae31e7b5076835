"""Export a trained ESPnet ASR model to ONNX (fp32 + int8) with ``tokens.txt`` and ``meta.json``.

What is written (the format is ``espnet_lw.onnx/1``, read by :mod:`espnet_lw.runtime`)::

    model.onnx        global MVN + Conformer encoder + linear CTC head + log_softmax, fp32
    model.int8.onnx   the same network (subsampling conv as MatMuls), onnxruntime dynamic quantization
                      of the MatMul weights (QInt8)
    tokens.txt        the config's token_list, one per line (line number = token id)
    meta.json         sampling rate, frontend settings, blank id, token type, sizes, source, parity
    parity.json       the parity check (also under meta.json's "parity")

Inputs ``feats`` float32 [B, T, n_mels] (log-mel, not normalised) and ``feats_lens`` int64 [B];
outputs ``log_probs`` float32 [B, T', V] and ``out_lens`` int64 [B]; B and T dynamic. The features
are not in the graph: the runtime computes ESPnet's DefaultFrontend in numpy from the settings in
meta.json (``frontend``).

Exporter: the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``). The network is a
fixed stack of tensor operations whose only dynamic quantities are B and T, which a trace with
``dynamic_axes`` keeps symbolic (sizes are traced values, so the positional encoding, the strided
slices and ESPnet's attention reshapes follow T); it needs nothing beyond ``onnx``. The dynamo
exporter (torch 2.12's default) would add ``onnxscript`` as a dependency and need ``torch.export``
dynamic-shape specifications for B and T (with the subsampling's ``(T - 1) // 2`` arithmetic as
guards) for no gain on a graph without data-dependent control flow. Opset 17
(``LayerNormalization`` is one op).

The exported graph is :class:`~espnet_lw.export.wrapper.CTCExportModule` (computed positional
encoding, convolutions that are matrix products written as MatMul so that int8 reaches them); it
is checked against the ESPnet model in torch before export, and the ONNX files against torch
after (:mod:`espnet_lw.export.parity`).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple, Union

import torch

from espnet_lw.export import parity as parity_mod
from espnet_lw.export.wrapper import MIN_FRAMES, SUBSAMPLING, CTCExportModule
from espnet_lw.models.loading import load_reference
from espnet_lw.utils.cli import UserError
from espnet_lw.utils.io import atomic_write_text, load_yaml, sha256_of
from espnet_lw.utils.quiet import import_quietly

logger = logging.getLogger(__name__)

FORMAT = "espnet_lw.onnx/1"
OPSET = 17
FP32_FILE, INT8_FILE = "model.onnx", "model.int8.onnx"
PRECISIONS = ("int8", "fp32", "auto")
#: wrapper vs ESPnet model (both torch): larger differences mean the rewrite is wrong
WRAPPER_TOLERANCE = 1e-3
#: int8 may cost at most this relative test WER against fp32 (the issue's bound; used by "auto")
INT8_MAX_RELATIVE_WER = 0.03

PathLike = Union[str, os.PathLike]


@dataclass
class ExportResult:
    out_dir: Path
    meta: dict
    files: dict = field(default_factory=dict)  # precision -> path


# ------------------------------------------------------------------------------ loading
def load_asr_model(config: PathLike, model_file: PathLike) -> Tuple[torch.nn.Module, dict]:
    """The trained model (eval, CPU) and its config as a dict; ``model: lw_ctc`` students too.

    Built with the plugin's task (``lw_*`` classes registered); the checkpoint must match the config
    exactly, and a relative ``normalize_conf.stats_file`` is found from the recipe directory.
    """
    config, model_file = Path(config), Path(model_file)
    if not config.is_file():
        raise UserError("no such training config", str(config), "pass the config.yaml written next to the model")
    if not model_file.is_file():
        raise UserError("no such model file", str(model_file), "pass a .pth such as valid.loss.ave.pth")
    conf = load_yaml(config, "training config")
    if "encoder" not in conf or "token_list" not in conf:
        raise UserError("not an ESPnet ASR training config (no encoder / token_list)", str(config))
    model, args = load_reference(config, model_file, "cpu")
    conf["token_list"] = list(args.token_list)  # a path in the YAML: the list ESPnet read from it
    return model, conf


# ------------------------------------------------------------------------------ meta data
def frontend_settings(conf: dict, config_path: PathLike = "config") -> dict:
    """ESPnet's DefaultFrontend settings for ``conf`` (its ``frontend_conf`` over ESPnet's defaults).

    Returned in the runtime's terms (``espnet_lw.onnx/1``: STFT -> power -> librosa mel -> log).
    """
    name = conf.get("frontend", "default")
    if name not in ("default", None):
        raise UserError(f"frontend '{name}' is not exported (only 'frontend: default', ESPnet's log-mel fbank)",
                        str(config_path))
    default = import_quietly("espnet2.asr.frontend.default")
    humanfriendly = import_quietly("humanfriendly")
    sig = inspect.signature(default.DefaultFrontend.__init__)
    eff = {k: p.default for k, p in sig.parameters.items() if k != "self" and p.default is not inspect.Parameter.empty}
    given = dict(conf.get("frontend_conf") or {})
    unknown = set(given) - set(eff)
    if unknown:
        raise UserError(f"frontend_conf keys {sorted(unknown)} are not DefaultFrontend options", str(config_path))
    eff.update(given)
    fs = eff["fs"]
    fs = int(humanfriendly.parse_size(fs)) if isinstance(fs, str) else int(fs)
    if eff.get("frontend_conf") not in (None, {}) and (eff["frontend_conf"].get("use_wpe")
                                                       or eff["frontend_conf"].get("use_beamformer")):
        raise UserError("a WPE / beamformer frontend is not exported", str(config_path))
    if not eff.get("apply_stft", True):
        raise UserError("frontend_conf.apply_stft false is not exported", str(config_path))
    n_fft = int(eff["n_fft"])
    return {
        "type": "fbank",
        "n_fft": n_fft,
        "win_length": int(eff["win_length"]) if eff["win_length"] is not None else n_fft,
        "hop_length": int(eff["hop_length"]),
        "n_mels": int(eff["n_mels"]),
        "fmin": float(eff["fmin"]) if eff["fmin"] is not None else 0.0,
        "fmax": float(eff["fmax"]) if eff["fmax"] is not None else fs / 2,
        "window": eff["window"],
        "center": bool(eff["center"]),
        "normalized": bool(eff["normalized"]),
        "onesided": bool(eff["onesided"]),
        "pad_mode": "reflect",
        "log_floor": 1e-10,
        "mel": "librosa-htk" if eff["htk"] else "librosa-slaney",
        "fs": fs,
    }


def token_info(conf: dict) -> dict:
    """``token_type``, ``blank_id`` (and ``space_token`` for characters) from the config's token list."""
    tokens = list(conf["token_list"])
    token_type = str(conf.get("token_type") or "char")
    info = {"token_type": token_type, "blank_id": tokens.index("<blank>") if "<blank>" in tokens else 0}
    if token_type == "char":
        info["space_token"] = "<space>"
    return info


def count_params(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


# ------------------------------------------------------------------------------ ONNX
def export_fp32(module: CTCExportModule, path: PathLike, n_mels: int) -> Path:
    """Trace ``module`` to ``path`` (TorchScript exporter, opset 17, dynamic B and T); checked with onnx."""
    import onnx

    path = Path(path)
    # two utterances of different lengths: nothing is specialised to B = 1 or to equal lengths
    feats = torch.randn(2, 203, n_mels)
    lens = torch.tensor([203, 150], dtype=torch.int64)
    tmp = path.with_name(f".{path.name}.tmp")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings about traced sizes are what makes T dynamic
        torch.onnx.export(
            module, (feats, lens), str(tmp), dynamo=False, opset_version=OPSET,
            input_names=["feats", "feats_lens"], output_names=["log_probs", "out_lens"],
            dynamic_axes={"feats": {0: "B", 1: "T"}, "feats_lens": {0: "B"},
                          "log_probs": {0: "B", 1: "T_out"}, "out_lens": {0: "B"}},
            do_constant_folding=True,
        )
    onnx.checker.check_model(str(tmp))
    os.replace(tmp, path)
    return path


def quantize_int8(src: PathLike, dst: PathLike) -> Path:
    """onnxruntime dynamic quantization: MatMul weights to QInt8 (activations quantized at run time).

    Only ``MatMul`` with a constant weight is rewritten (``MatMulInteger``); convolutions stay fp32
    (quantized ``ConvInteger`` may not run on onnxruntime's CPU provider).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.tmp")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # "consider pre-processing" warning: shape inference adds nothing here
    try:
        quantize_dynamic(str(src), str(tmp), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    os.replace(tmp, dst)
    return dst


def verify_wrapper(model, module: CTCExportModule, waves) -> float:
    """Max |log-prob| difference between ``module`` on the model's features and ESPnet's ``encode``
    + CTC log-softmax, each utterance alone; raises when above :data:`WRAPPER_TOLERANCE`."""
    worst = 0.0
    with torch.no_grad():
        for wav in waves:
            speech = torch.as_tensor(wav, dtype=torch.float32)[None]
            lens = torch.tensor([speech.size(1)])
            enc, enc_lens = model.encode(speech, lens)
            ref = model.ctc.log_softmax(enc)[0, : int(enc_lens[0])]
            feats, feats_lens = model._extract_feats(speech, lens)
            out, out_lens = module(feats, feats_lens)
            if int(out_lens[0]) != ref.size(0):
                raise RuntimeError(f"export wrapper: {int(out_lens[0])} output frames, ESPnet {ref.size(0)}")
            worst = max(worst, float((out[0, : ref.size(0)] - ref).abs().max()))
    if worst > WRAPPER_TOLERANCE:
        raise RuntimeError(f"export wrapper differs from the ESPnet model by {worst:.3g} in log-probabilities "
                           f"(tolerance {WRAPPER_TOLERANCE}): the rewrite is wrong for this model")
    return worst


# ------------------------------------------------------------------------------ the whole export
def export_model(
    asr_train_config: PathLike,
    asr_model_file: PathLike,
    out_dir: PathLike,
    parity_scp: Optional[PathLike] = None,
    parity_n: int = 20,
    int8: bool = True,
    default_precision: str = "int8",
) -> ExportResult:
    """Export the model to ``out_dir`` (see the module docstring), check parity, write meta.json.

    ``parity_scp``: a ``wav.scp`` whose first ``parity_n`` utterances (0: all) are decoded with
    torch, fp32 and int8 (a ``text`` file beside it adds word error rates); without it, a few
    synthetic signals. ``default_precision``: ``int8``, ``fp32`` or ``auto`` (int8 unless its WER
    on the parity set is more than 3 % relative above fp32's; needs the ``text`` file).
    """
    if default_precision not in PRECISIONS:
        raise UserError(f"default precision must be one of {PRECISIONS}, got {default_precision!r}")
    if not int8 and default_precision == "int8":
        default_precision = "fp32"
    if not int8 and default_precision != "fp32":
        raise UserError(f"default precision {default_precision} needs the int8 model (drop --no_int8)")
    config, model_file = Path(asr_train_config), Path(asr_model_file)
    model, conf = load_asr_model(config, model_file)
    front = frontend_settings(conf, config)
    fs = front.pop("fs")
    # fp32: the subsampling's second conv stays a Conv (onnxruntime's fp32 Conv beats nine MatMuls by
    # ~15 % of the whole network); int8: the same network with that conv as MatMuls, quantized
    modules = {"fp32": CTCExportModule(model, conv_as_matmul=False)}
    if int8:
        modules["int8"] = CTCExportModule(model, conv_as_matmul=True)
    if parity_scp is not None:
        utts = parity_mod.read_utterances(parity_scp, fs, parity_n)
    else:
        utts = parity_mod.synthetic_utterances(fs)
    wrapper_diff = max(verify_wrapper(model, m, [u.wave for u in utts[: parity_mod.LOGPROB_UTTS]])
                       for m in modules.values())
    logger.info("export wrapper vs ESPnet model: max |log-prob diff| %.3g", wrapper_diff)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"fp32": export_fp32(modules["fp32"], out / FP32_FILE, front["n_mels"])}
    if int8:
        matmul_fp32 = export_fp32(modules["int8"], out / f".{INT8_FILE}.fp32.onnx", front["n_mels"])
        try:
            files["int8"] = quantize_int8(matmul_fp32, out / INT8_FILE)
        finally:
            matmul_fp32.unlink()
    else:
        stale = out / INT8_FILE
        if stale.exists():
            stale.unlink()
    tokens = list(conf["token_list"])
    atomic_write_text(out / "tokens.txt", "".join(t + "\n" for t in tokens))

    report = parity_mod.check(model, files, utts, token_info(conf), tokens,
                              source=str(parity_scp) if parity_scp is not None else "synthetic")
    report["wrapper_vs_torch"] = {"max_abs_diff": wrapper_diff}
    if default_precision == "auto":
        default_precision, why = parity_mod.choose_precision(report, INT8_MAX_RELATIVE_WER)
        report["default_precision_reason"] = why
    params = count_params(model)
    meta = {
        "format": FORMAT,
        "sample_rate": fs,
        **token_info(conf),
        "frontend": front,
        "subsampling": SUBSAMPLING,
        "min_frames": MIN_FRAMES,
        "default_precision": default_precision,
        "model": {
            "name": config.resolve().parent.name,
            "class": conf.get("model", "espnet"),
            "num_blocks": len(model.encoder.encoders),
            "output_size": int(model.encoder.output_size()),
            "vocab_size": len(tokens),
            "params": params,
        },
        "files": {p: {"file": f.name, "bytes": f.stat().st_size,
                      "bytes_per_param": round(f.stat().st_size / params, 4)} for p, f in files.items()},
        "onnx": {"opset": OPSET, "exporter": "torch.onnx (TorchScript, dynamo=False)",
                 "torch": torch.__version__, "quantization": "quantize_dynamic MatMul QInt8" if int8 else None},
        "source": {"config": str(config.resolve()), "model_file": str(model_file.resolve()),
                   "sha256": sha256_of(model_file), "config_sha256": sha256_of(config)},
        "parity": report,
    }
    atomic_write_text(out / "parity.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return ExportResult(out, meta, files)
