"""EncRL: a shallow student encoder learns to reproduce a frozen reference ASR encoder.

``model: lw_encrl`` in an ESPnet ASR training config. The config's frontend / specaug /
normalize / encoder / ctc describe the **student** (a stock ``ConformerEncoder`` with fewer
``num_blocks`` and its linear CTC head); ``model_conf`` names the reference and the loss::

    model: lw_encrl
    model_conf:
        reference_config: exp/asr_reference/config.yaml   # ESPnet config of the trained reference
        reference_model: exp/asr_reference/valid.loss.ave.pth
        alignment:                                        # see espnet_lw.losses.alignment
            clip: {weight: 1.0, level: utterance, temperature: 0.07}
            mse: {weight: 1.0, target: ctc_logp}
        init_from_reference: null     # null | first | last | every_other | [0, 4, 8, ...]
        ctc_weight_in_encrl: 0.0      # > 0 adds the student's CTC loss on the transcripts
        reference_cache: null         # dir(s) written by espnet_lw.bin.dump_reference_targets
        cache_length_tolerance: 2     # cached vs. in-batch output lengths may differ by this much

The reference is built with ESPnet's own model code from its ``config.yaml``, loaded strictly
(every key present, nothing extra), frozen, always in eval mode and run under
``torch.no_grad()``. It is held outside ``nn.Module``'s registry, so it is in neither
``state_dict()`` (``<N>epoch.pth`` holds the student only) nor ``parameters()`` (the
optimizer never sees it); :meth:`EncRLModel._apply` moves it along with ``model.to(device)``.

The reference sees the clean waveform through its own frontend + normalize; the student sees
its frontend -> SpecAugment (training only) -> normalize. When a batch carries cached reference
outputs (``ref_enc`` / ``ref_logp``, read by ESPnet's data loader from ark/scp), they replace
the reference's forward pass.

The fine-tune stage then starts a ``model: lw_ctc`` model from the EncRL checkpoint with
``--init_param <encrl.pth>:::alignment`` (everything except the projection heads /
temperature of the loss).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import yaml

from espnet_lw.utils.quiet import import_quietly

import_quietly("espnet2.asr.espnet_model")  # offline nltk + no Flash Attention notice on stdout

from espnet2.asr.espnet_model import ESPnetASRModel  # noqa: E402
from espnet2.torch_utils.device_funcs import force_gatherable  # noqa: E402

from espnet_lw.losses.alignment import AlignmentLoss  # noqa: E402
from espnet_lw.utils.cli import UserError  # noqa: E402

logger = logging.getLogger(__name__)

#: reference keys copied into a student by ``init_from_reference`` / ``init_student``
#: (besides the chosen ``encoder.encoders.<i>`` blocks, renumbered)
SHARED_PREFIXES = ("encoder.embed.", "encoder.after_norm.", "ctc.ctc_lo.", "normalize.")

BlocksSpec = Union[None, str, Sequence[int]]


# ------------------------------------------------------------------------------ reference loading
def _resolve_stats_file(args: argparse.Namespace, config_file: Path, state: dict, tmpdir: str) -> None:
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


def _load_state(model_file: Path) -> dict:
    try:
        state = torch.load(model_file, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"cannot read the reference model ({e.__class__.__name__}: {e})", str(model_file)) from e
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


def load_reference(
    reference_config: Union[str, Path],
    reference_model: Union[str, Path],
    device: Union[str, torch.device] = "cpu",
) -> Tuple[ESPnetASRModel, argparse.Namespace]:
    """Build a reference ASR model from its ESPnet ``config.yaml`` + ``.pth``, strictly, frozen.

    Unlike ESPnet's ``build_model_from_file`` (``strict=False``, silent), a checkpoint with a
    missing, unexpected or wrongly shaped key is refused with a message naming the file.
    Returns ``(model, args)``; the model is in eval mode with ``requires_grad`` off.
    """
    from espnet_lw.tasks.asr import LWASRTask  # noqa: PLC0415 - registers lw_* model classes

    config_file, model_file = Path(reference_config), Path(reference_model)
    for f, what in ((config_file, "reference config"), (model_file, "reference model")):
        if not f.is_file():
            raise UserError(f"{what} not found", str(f), "train the reference first (stage 11) or fix model_conf")
    with config_file.open(encoding="utf-8") as fh:
        conf = yaml.safe_load(fh)
    if not isinstance(conf, dict) or "encoder" not in conf or "token_list" not in conf:
        raise UserError("not an ESPnet ASR training config (no encoder/token_list)", str(config_file),
                        "pass the config.yaml written next to the reference's checkpoints")
    args = argparse.Namespace(**conf)
    state = _load_state(model_file)
    with tempfile.TemporaryDirectory() as tmpdir:
        _resolve_stats_file(args, config_file, state, tmpdir)
        try:
            model = LWASRTask.build_model(args)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001
            raise UserError(f"cannot build the reference model from this config ({e.__class__.__name__}: {e})",
                            str(config_file)) from e
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        if shape:
            k = shape[0]
            parts.append(f"{len(shape)} keys with other shapes (e.g. {k}: {tuple(state[k].shape)} in the file, "
                         f"{tuple(own[k].shape)} from {config_file})")
        raise UserError(
            "the checkpoint does not match its config: " + "; ".join(parts),
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


# ------------------------------------------------------------------------------ reference files
_hash_cache: Dict[Tuple[str, int, int], str] = {}


def file_sha256(path: Union[str, Path]) -> str:
    """sha256 of a file (memoised per path/size/mtime within the process)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _hash_cache:
        h = hashlib.sha256()
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _hash_cache[key] = h.hexdigest()
    return _hash_cache[key]


def reference_fingerprint(reference_config: Union[str, Path], reference_model: Union[str, Path]) -> dict:
    """What identifies a reference: paths, sizes, mtimes and sha256 of its config and model."""
    out = {}
    for name, f in (("config", reference_config), ("model", reference_model)):
        p = Path(f)
        st = p.stat()
        out[name] = {"path": str(p.resolve()), "size": st.st_size, "mtime": st.st_mtime, "sha256": file_sha256(p)}
    return out


def check_reference_cache(
    cache_dir: Union[str, Path],
    reference_config: Union[str, Path],
    reference_model: Union[str, Path],
    need: Sequence[str] = ("enc",),
) -> dict:
    """Refuse a target cache that is unfinished or was made with another reference; return its info."""
    cache_dir = Path(cache_dir)
    info_file = cache_dir / "info.yaml"
    if not info_file.is_file():
        raise UserError("no info.yaml: not a reference-target cache", str(cache_dir),
                        "write it with python -m espnet_lw.bin.dump_reference_targets")
    with info_file.open(encoding="utf-8") as fh:
        info = yaml.safe_load(fh) or {}
    if not info.get("complete"):
        raise UserError("the reference-target cache is unfinished", str(cache_dir),
                        "re-run espnet_lw.bin.dump_reference_targets with the same arguments (it resumes)")
    now = reference_fingerprint(reference_config, reference_model)
    for name in ("config", "model"):
        if (info.get("reference") or {}).get(name, {}).get("sha256") != now[name]["sha256"]:
            raise UserError(
                f"stale cache: it was made with another reference {name} "
                f"({(info.get('reference') or {}).get(name, {}).get('path')}), not {now[name]['path']}",
                str(info_file),
                f"re-run espnet_lw.bin.dump_reference_targets --output_dir {cache_dir} --overwrite true, "
                "or drop the cached ref_* data files",
            )
    missing = [w for w in need if w not in (info.get("what") or [])]
    if missing:
        raise UserError(f"the cache has no {', '.join(missing)} targets (it has {info.get('what')})", str(cache_dir),
                        "dump again with --what " + ",".join(need))
    return info


# ------------------------------------------------------------------------------ block selection
def select_blocks(spec: BlocksSpec, num_reference: int, num_student: int) -> List[int]:
    """Reference block indices that become student blocks ``0..num_student-1``.

    ``first``: the first k blocks; ``last``: the last k (the paper's "delete the first blocks"
    baseline); ``every_other``: k evenly spaced blocks ending with the last one (12 -> 6:
    1,3,5,7,9,11; 12 -> 4: 2,5,8,11); or an explicit list / comma-separated string.
    """
    if num_student > num_reference:
        raise ValueError(f"the student has {num_student} blocks, more than the reference's {num_reference}")
    if isinstance(spec, str) and spec not in ("first", "last", "every_other"):
        try:
            spec = [int(x) for x in spec.split(",") if x.strip()]
        except ValueError:
            raise ValueError(f"blocks must be first, last, every_other or a list of indices, got {spec!r}") from None
    if spec == "first":
        idx = list(range(num_student))
    elif spec == "last":
        idx = list(range(num_reference - num_student, num_reference))
    elif spec == "every_other":
        idx = [round((i + 1) * num_reference / num_student) - 1 for i in range(num_student)]
    else:
        idx = [int(i) for i in spec]
        if len(idx) != num_student:
            raise ValueError(f"{len(idx)} block indices given ({idx}) for a student with {num_student} blocks")
        bad = [i for i in idx if not 0 <= i < num_reference]
        if bad:
            raise ValueError(f"block indices {bad} out of range 0..{num_reference - 1}")
    return idx


def num_blocks_in(state: dict, prefix: str = "encoder.encoders.") -> int:
    ids = {int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)}
    return max(ids) + 1 if ids else 0


def reference_init_state(reference_state: dict, blocks: Sequence[int]) -> Dict[str, torch.Tensor]:
    """Student state dict made of reference tensors: shared parts + blocks ``blocks`` renumbered."""
    out: Dict[str, torch.Tensor] = {}
    for k, v in reference_state.items():
        if k.startswith(SHARED_PREFIXES):
            out[k] = v.detach().clone()
    for j, i in enumerate(blocks):
        src = f"encoder.encoders.{i}."
        found = False
        for k, v in reference_state.items():
            if k.startswith(src):
                out[f"encoder.encoders.{j}." + k[len(src):]] = v.detach().clone()
                found = True
        if not found:
            raise ValueError(f"the reference has no block {i} ({src}*)")
    return out


def check_init_state(init: dict, student_state: dict, where: str) -> None:
    """Every tensor of ``init`` must exist in the student with the same shape."""
    missing = [k for k in init if k not in student_state]
    shape = [k for k in init if k in student_state and tuple(init[k].shape) != tuple(student_state[k].shape)]
    if missing or shape:
        k = (shape or missing)[0]
        detail = (f"{k}: {tuple(init[k].shape)} in the reference, {tuple(student_state[k].shape)} in the student"
                  if shape else f"{k} has no place in the student")
        raise UserError(
            f"reference blocks cannot be copied into this student ({len(missing)} missing, {len(shape)} "
            f"differently shaped tensors, e.g. {detail})",
            where,
            "give the student the reference's encoder_conf (output_size, heads, units, input_layer, kernel) "
            "and token list, changing only num_blocks",
        )


# ------------------------------------------------------------------------------ the model
def _fit_time(x: torch.Tensor, t: int) -> torch.Tensor:
    """Cut or zero-pad the time axis (dim 1) of ``x`` to ``t`` frames."""
    if x.size(1) >= t:
        return x[:, :t]
    return torch.nn.functional.pad(x, (0, 0, 0, t - x.size(1)))


class EncRLModel(ESPnetASRModel):
    """Student encoder + linear CTC head trained to reproduce a frozen reference encoder."""

    def __init__(
        self,
        *args,
        reference_config: Optional[str] = None,
        reference_model: Optional[str] = None,
        alignment: Optional[dict] = None,
        init_from_reference: BlocksSpec = None,
        ctc_weight_in_encrl: float = 0.0,
        reference_cache: Union[None, str, List[str]] = None,
        cache_length_tolerance: int = 2,
        **kwargs,
    ):
        if kwargs.get("decoder") is not None:
            raise ValueError("model 'lw_encrl' has no attention decoder: set 'decoder: none' in the config")
        ctc_weight = kwargs.pop("ctc_weight", 1.0)
        if ctc_weight != 1.0:
            raise ValueError("model 'lw_encrl': use model_conf.ctc_weight_in_encrl, not ctc_weight")
        kwargs.setdefault("report_wer", False)
        kwargs.setdefault("report_cer", False)
        super().__init__(*args, ctc_weight=1.0, **kwargs)
        if not reference_config or not reference_model:
            raise UserError(
                "model 'lw_encrl' needs model_conf.reference_config and model_conf.reference_model",
                fix="point them at the reference exp dir's config.yaml and valid.loss.ave.pth",
            )
        if self.encoder is None:
            raise ValueError("model 'lw_encrl' needs a student encoder")
        if ctc_weight_in_encrl < 0:
            raise ValueError(f"ctc_weight_in_encrl must be >= 0, got {ctc_weight_in_encrl}")
        self.ctc_weight_in_encrl = float(ctc_weight_in_encrl)
        self.cache_length_tolerance = int(cache_length_tolerance)
        self.reference_config = str(reference_config)
        self.reference_model = str(reference_model)

        reference, _ = load_reference(reference_config, reference_model)
        # a plain attribute: not a registered submodule -> not in state_dict()/parameters()/train()
        self.__dict__["_reference"] = reference

        ref_dim = reference.encoder.output_size()
        self.alignment = AlignmentLoss(alignment or {"clip": {}, "mse": {"target": "ctc_logp"}},
                                       self.encoder.output_size(), ref_dim)
        self._check_reference(init_from_reference)

        if reference_cache:
            need = ["enc"]
            for d in [reference_cache] if isinstance(reference_cache, str) else reference_cache:
                check_reference_cache(d, reference_config, reference_model, need)

        self.init_blocks: Optional[List[int]] = None
        if init_from_reference is not None:
            n_ref = len(reference.encoder.encoders)
            n_stu = len(self.encoder.encoders)
            try:
                self.init_blocks = select_blocks(init_from_reference, n_ref, n_stu)
            except ValueError as e:
                raise UserError(f"model_conf.init_from_reference: {e}") from e
            init = reference_init_state(reference.state_dict(), self.init_blocks)
            check_init_state(init, self.state_dict(), self.reference_config)
            self.load_state_dict(init, strict=False)
            logger.info("student initialised from reference blocks %s", self.init_blocks)

    # -- the frozen reference -----------------------------------------------------------------
    @property
    def reference(self) -> ESPnetASRModel:
        """The frozen reference model (not a submodule)."""
        return self.__dict__["_reference"]

    def train(self, mode: bool = True):
        super().train(mode)
        ref = self.__dict__.get("_reference")
        if ref is not None:
            ref.eval()  # always: no dropout, no SpecAugment in the reference
        return self

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        ref = self.__dict__.get("_reference")
        if ref is not None:
            ref._apply(fn, *args, **kwargs)
            ref.requires_grad_(False)
        return self

    def _check_reference(self, init_from_reference: BlocksSpec) -> None:
        ref, where = self.reference, self.reference_config
        if (self.alignment.needs_logp or init_from_reference is not None) and list(ref.token_list) != list(
            self.token_list
        ):
            raise UserError(
                f"the reference's token list ({len(ref.token_list)} tokens) differs from the student's "
                f"({len(self.token_list)}): CTC log-posteriors / heads cannot be compared",
                where,
                "train the student with the reference's token_list (same BPE model)",
            )
        # frame rate: hop length of the features and the encoder's subsampling must agree
        s_hop = getattr(self.frontend, "hop_length", None)
        r_hop = getattr(ref.frontend, "hop_length", None)
        if s_hop is not None and r_hop is not None and s_hop != r_hop:
            raise UserError(f"the reference's frontend hop_length is {r_hop}, the student's {s_hop}", where,
                            "use the reference's frontend_conf for the student")
        s_sr = getattr(getattr(self.frontend, "logmel", None), "mel_options", {}).get("sr")
        r_sr = getattr(getattr(ref.frontend, "logmel", None), "mel_options", {}).get("sr")
        if s_sr is not None and r_sr is not None and s_sr != r_sr:
            raise UserError(f"the reference's sampling rate is {r_sr}, the student's {s_sr}", where,
                            "use the reference's frontend_conf (fs) for the student")
        s_sub = type(getattr(self.encoder, "embed", None)).__name__
        r_sub = type(getattr(ref.encoder, "embed", None)).__name__
        if s_sub != r_sub:
            raise UserError(f"the reference's encoder input layer is {r_sub}, the student's {s_sub} "
                            "(different subsampling -> different frame rates)", where,
                            "use the reference's encoder_conf.input_layer for the student")

    # -- forward --------------------------------------------------------------------------------
    def _reference_targets(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        ref_enc: Optional[torch.Tensor],
        ref_enc_lengths: Optional[torch.Tensor],
        ref_logp: Optional[torch.Tensor],
    ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor], torch.Tensor]:
        ref = self.reference
        need_logp = self.alignment.needs_logp
        with torch.no_grad():
            if ref_enc is None:
                first = next(ref.parameters(), None)
                if first is not None and first.device != speech.device:
                    ref.to(speech.device)
                ref.eval()
                r_enc, r_lens = ref.encode(speech, speech_lengths)
                if isinstance(r_enc, tuple):
                    r_enc = r_enc[0]
            else:
                r_enc, r_lens = ref_enc.to(speech.device), ref_enc_lengths.to(speech.device)
            r_logp = None
            if need_logp:
                if ref_logp is not None:
                    r_logp = ref_logp.to(speech.device)
                else:
                    r_logp = ref.ctc.log_softmax(r_enc.to(next(ref.ctc.parameters()).dtype))
        return r_enc, r_logp, r_lens

    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: Optional[torch.Tensor] = None,
        text_lengths: Optional[torch.Tensor] = None,
        ref_enc: Optional[torch.Tensor] = None,
        ref_enc_lengths: Optional[torch.Tensor] = None,
        ref_logp: Optional[torch.Tensor] = None,
        ref_logp_lengths: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """EncRL loss of a batch: ``(loss, stats, weight)`` as ESPnet's trainer expects."""
        batch_size = speech.shape[0]
        enc, enc_lens = self.encode(speech, speech_lengths)
        if isinstance(enc, tuple):
            enc = enc[0]
        r_enc, r_logp, r_lens = self._reference_targets(speech, speech_lengths, ref_enc, ref_enc_lengths, ref_logp)
        t = enc.size(1)
        if ref_enc is None:
            if not torch.equal(enc_lens.cpu(), r_lens.cpu()):
                raise RuntimeError(
                    "EncRL: student and reference encoders give different output lengths "
                    f"(student {enc_lens.tolist()}, reference {r_lens.tolist()}); they need the same "
                    "frontend hop_length and encoder input_layer (subsampling)"
                )
            lens = enc_lens
        else:
            # ESPnet's conv2d subsampling counts output frames from the *padded* batch length, so
            # a cached utterance (computed alone) may be a frame shorter or longer than the same
            # utterance in a training batch: compare the common frames only.
            r_lens = r_lens.to(enc_lens.device)
            diff = int((enc_lens - r_lens).abs().max())
            if diff > self.cache_length_tolerance:
                raise RuntimeError(
                    "EncRL: the cached ref_enc does not fit this data: student output lengths "
                    f"{enc_lens.tolist()}, cached {r_lens.tolist()} (utterances {kwargs.get('utt_id')}); "
                    "was the cache dumped from another data dir or another reference?"
                )
            lens = torch.minimum(enc_lens, r_lens)
        r_enc = _fit_time(r_enc, t)
        if r_logp is not None:
            r_logp = _fit_time(r_logp, t)
        s_logp = self.ctc.log_softmax(enc) if self.alignment.needs_logp else None
        loss, stats = self.alignment(enc, r_enc, lens, s_logp, r_logp)
        if self.ctc_weight_in_encrl > 0:
            if text is None or text_lengths is None:
                raise ValueError("ctc_weight_in_encrl > 0 needs the transcripts (text) in the batch")
            loss_ctc, _ = self._calc_ctc_loss(enc, enc_lens, text, text_lengths)
            loss = loss + self.ctc_weight_in_encrl * loss_ctc
            stats["loss_ctc"] = loss_ctc.detach()
        stats["loss"] = loss.detach()
        loss, stats, weight = force_gatherable((loss, stats, batch_size), loss.device)
        return loss, stats, weight
