"""Loading trained ESPnet ASR models: model files, the strict reference loader, parameter counts.

* :func:`load_state` / :func:`save_state` - a model file (``.pth`` state dict) in and out, with
  the user's mistakes (a training ``checkpoint.pth``, an unreadable file) as ``UserError``;
* :func:`load_reference` - a reference ASR model from its ESPnet ``config.yaml`` + ``.pth``,
  built with ESPnet's stock ``ASRTask``, loaded strictly, frozen;
* :func:`resolve_stats_file` - make a config's global-MVN ``stats_file`` loadable from anywhere;
* :func:`count_parameters` / :func:`parameter_report` - the model size lines of ``params.txt``.

This module depends on ESPnet's task and model classes only (never on :mod:`espnet_lw.tasks`):
a reference config naming ``model: lw_ctc`` gets :class:`~espnet_lw.models.linear_ctc.LinearCTCModel`
registered in ESPnet's ``model_choices`` here.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Tuple, Union

import numpy as np
import torch

from espnet_lw.utils.checkpoints import safe_torch_load
from espnet_lw.utils.cli import UserError
from espnet_lw.utils.io import load_yaml
from espnet_lw.utils.quiet import import_quietly

if TYPE_CHECKING:
    from espnet2.asr.espnet_model import ESPnetASRModel

PathLike = Union[str, Path]


# ------------------------------------------------------------------------------ model files
def load_state(model_file: PathLike) -> dict:
    """The state dict of a model file (``valid.loss.ave.pth``, ``<N>epoch.pth``), on the CPU.

    Loaded with ``weights_only=True`` (:func:`~espnet_lw.utils.checkpoints.safe_torch_load`): a file
    that would run code when unpickled is refused. A DeepSpeed-style ``{"module": ...}`` wrapper is
    unwrapped; a training ``checkpoint.pth`` (model + optimizers) and anything that is not a state
    dict are refused with a ``UserError``.
    """
    model_file = Path(model_file)
    # weights_only: a downloaded model never runs code here (a pickled object is refused, naming the file)
    state = safe_torch_load(model_file, "reference model")
    if isinstance(state, dict) and "module" in state and isinstance(state["module"], dict):
        state = state["module"]
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict) and "optimizers" in state:
        raise UserError(
            "this is a training checkpoint (checkpoint.pth), not a model file",
            str(model_file),
            "pass a model file such as valid.loss.ave.pth or <N>epoch.pth",
        )
    if not isinstance(state, dict):
        raise UserError("not a state dict", str(model_file))
    return state


def save_state(state: Dict[str, torch.Tensor], path: PathLike) -> Path:
    """Write a (partial) state dict as ESPnet's ``--init_param`` reads it; the parent is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


# ------------------------------------------------------------------------------ reference loading
def resolve_stats_file(args: argparse.Namespace, config_file: Path, state: dict, tmpdir: str) -> None:
    """Make ``normalize_conf.stats_file`` loadable from any working directory.

    Training configs hold the stats path relative to the recipe directory. The mean / std end up
    as buffers in the checkpoint anyway, so when the file cannot be found (relative to the
    working directory or to the recipe directory above ``exp/<name>/config.yaml``) a placeholder
    of the right dimension is written: the checkpoint's buffers overwrite it.
    """
    conf = getattr(args, "normalize_conf", None) or {}
    if getattr(args, "normalize", None) != "global_mvn" or "stats_file" not in conf:
        return
    stats = Path(conf["stats_file"])
    if stats.is_file():
        return
    for base in (config_file.parent, *config_file.resolve().parents[:3]):
        cand = base / stats
        if cand.is_file():
            args.normalize_conf = {**conf, "stats_file": str(cand)}
            return
    if "normalize.mean" not in state:
        raise UserError(
            f"normalize stats file {stats} not found and the checkpoint has no normalize.mean",
            str(config_file),
            "run the reference's recipe directory, or fix normalize_conf.stats_file",
        )
    dim = int(state["normalize.mean"].numel())
    placeholder = Path(tmpdir) / "feats_stats.npz"
    np.savez(placeholder, count=np.array(1.0), sum=np.zeros(dim), sum_square=np.ones(dim))
    args.normalize_conf = {**conf, "stats_file": str(placeholder)}


def _asr_task(model_name: str):
    """ESPnet's stock ``ASRTask`` class, knowing ``lw_ctc`` when ``model_name`` asks for it."""
    asr = import_quietly("espnet2.tasks.asr")
    if model_name == "lw_ctc" and "lw_ctc" not in asr.model_choices.classes:
        from espnet_lw.models.linear_ctc import LinearCTCModel  # noqa: PLC0415 - imports ESPnet's model

        asr.model_choices.classes["lw_ctc"] = LinearCTCModel
    return asr.ASRTask


def _mismatch(own: dict, state: dict, config_file: Path) -> List[str]:
    """What keeps ``state`` from loading strictly into a model whose state dict is ``own``."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    if shape:
        k = shape[0]
        parts.append(f"{len(shape)} keys with other shapes (e.g. {k}: {tuple(state[k].shape)} in the file, "
                     f"{tuple(own[k].shape)} from {config_file})")
    return parts


def load_reference(
    reference_config: PathLike,
    reference_model: PathLike,
    device: Union[str, torch.device] = "cpu",
) -> Tuple["ESPnetASRModel", argparse.Namespace]:
    """Build a reference ASR model from its ESPnet ``config.yaml`` + ``.pth``, strictly, frozen.

    Unlike ESPnet's ``build_model_from_file`` (``strict=False``, silent), a checkpoint with a
    missing, unexpected or wrongly shaped key is refused with a message naming the file.
    Returns ``(model, args)``; the model is in eval mode with ``requires_grad`` off.
    """
    config_file, model_file = Path(reference_config), Path(reference_model)
    for f, what in ((config_file, "reference config"), (model_file, "reference model")):
        if not f.is_file():
            raise UserError(f"{what} not found", str(f), "train the reference first (stage 11) or fix model_conf")
    conf = load_yaml(config_file, "reference config", allow_empty=True)
    if "encoder" not in conf or "token_list" not in conf:
        raise UserError("not an ESPnet ASR training config (no encoder/token_list)", str(config_file),
                        "pass the config.yaml written next to the reference's checkpoints")
    args = argparse.Namespace(**conf)
    state = load_state(model_file)
    with tempfile.TemporaryDirectory() as tmpdir:
        resolve_stats_file(args, config_file, state, tmpdir)
        try:
            model = _asr_task(str(conf.get("model", "espnet"))).build_model(args)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001
            raise UserError(f"cannot build the reference model from this config ({e.__class__.__name__}: {e})",
                            str(config_file)) from e
    problems = _mismatch(model.state_dict(), state, config_file)
    if problems:
        raise UserError(
            "the checkpoint does not match its config: " + "; ".join(problems),
            str(model_file),
            f"give the config.yaml this checkpoint was trained with (now: {config_file})",
        )
    model.load_state_dict(state, strict=True)
    if getattr(model, "encoder", None) is None or getattr(model, "ctc", None) is None:
        raise UserError("the reference model needs an encoder and a CTC head", str(config_file))
    model.requires_grad_(False)
    model.eval()
    model.to(device)
    return model, args


# ------------------------------------------------------------------------------ model size
def count_parameters(model: torch.nn.Module) -> Dict[str, int]:
    """Parameters per top-level module (``encoder``, ``ctc``, ``frontend`` ...)."""
    out: Dict[str, int] = {}
    for name, p in model.named_parameters():
        out[name.split(".")[0]] = out.get(name.split(".")[0], 0) + p.numel()
    return out


def parameter_report(model: torch.nn.Module) -> List[str]:
    """The lines of ``params.txt``: the total first (read by the results tables), then per module,
    the number of encoder blocks and the float32 size."""
    parts = count_parameters(model)
    total = sum(parts.values())
    lines = [str(total)] + [f"{name}: {n}" for name, n in sorted(parts.items())]
    blocks = getattr(getattr(model, "encoder", None), "encoders", None)
    if blocks is not None:
        lines.append(f"encoder blocks: {len(blocks)}")
    lines.append(f"float32 size: {total * 4 / 2**20:.1f} MiB")
    return lines
