"""Student configs: the typed ``conf/student_r*.yaml`` schema and the ESPnet training configs it gives.

A student config only says what differs from the reference::

    reduction: 0.667              # remove 66.7 % of the reference's blocks (12 -> 4, 6 -> 2)
    # num_blocks: 4               # or say the number of blocks directly
    encrl:                        # representation transfer (model lw_encrl)
        max_epoch: 10
        model_conf:
            alignment: {clip: {weight: 1.0, level: utterance, temperature: 0.07},
                        mse: {weight: 1.0, target: ctc_logp}}
            init_from_reference: null
    finetune:                     # linear-CTC fine-tuning from EncRL (model lw_ctc)
        max_epoch: 5
    scratch:                      # baseline: the same student, CTC from random init
        max_epoch: 15
    pruned:                       # baseline: reference blocks (first|last|every_other|[i,..]) + CTC
        blocks: first
        max_epoch: 5

Everything else (features, SpecAugment, encoder width and layout, optimiser, batch size) is
taken from the reference's ``config.yaml`` (:data:`INHERITED`), so a student always matches its
reference. Keys in a section other than ``model_conf`` / ``blocks`` override the reference's
training keys (``optim_conf``, ``max_epoch``, ``batch_bins`` ...).

:meth:`StudentConfig.load` reads and checks the file (an unknown key is refused with the allowed
ones and the file's name); :func:`make_configs` derives the training configs of a mode
(``encrl.yaml`` + ``finetune.yaml``, ``scratch.yaml``, or ``finetune.yaml`` + ``blocks.txt``);
:func:`write_student_configs` writes them, refusing to change those of a trained student.
This module imports neither torch nor ESPnet.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import yaml

from espnet_lw.losses.config import AlignmentConfig
from espnet_lw.models.blocks import parse_blocks
from espnet_lw.utils.cli import ConfigError, UserError
from espnet_lw.utils.io import atomic_write_text, load_yaml

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]

#: reference training keys a student inherits (model shape, features, optimisation, batching)
INHERITED = (
    "frontend", "frontend_conf", "specaug", "specaug_conf", "preencoder", "preencoder_conf",
    "encoder", "encoder_conf", "postencoder", "postencoder_conf", "ctc_conf",
    "optim", "optim_conf", "scheduler", "scheduler_conf", "batch_type", "batch_bins",
    "batch_size", "valid_batch_bins", "accum_grad", "grad_clip", "num_workers", "patience",
    "keep_nbest_models", "log_interval", "seed", "use_tensorboard", "use_amp", "num_att_plot",
    "max_epoch",
)
#: the sections of a student config (one per training of a student)
SECTIONS = ("encrl", "finetune", "scratch", "pruned")
#: keys of a section besides the inherited ones it may override
SECTION_KEYS = ("model_conf", "blocks", "best_model_criterion")
TOP_KEYS = ("num_blocks", "reduction") + SECTIONS
#: the sections each mode trains
MODES = {"encrl": ("encrl", "finetune"), "scratch": ("scratch",), "pruned": ("pruned",)}


# ------------------------------------------------------------------------------ the schema
@dataclass
class Section:
    """One training of a student: reference keys it overrides, its ``model_conf``, its blocks."""

    name: str
    overrides: Dict[str, Any] = field(default_factory=dict)  #: INHERITED keys / best_model_criterion
    model_conf: Dict[str, Any] = field(default_factory=dict)  #: lw_encrl's model_conf (section encrl)
    blocks: Union[str, List[int]] = "first"  #: section pruned: the reference blocks the student starts from

    @classmethod
    def from_dict(cls, name: str, data: Any, path: Path) -> "Section":
        if data is None:
            return cls(name)
        if not isinstance(data, Mapping):
            raise UserError(f"section '{name}' must be a mapping", str(path))
        bad = set(data) - set(INHERITED) - set(SECTION_KEYS)
        if bad:
            raise UserError(
                f"section '{name}': unknown keys {sorted(bad)}; allowed: model_conf, blocks and {', '.join(INHERITED)}",
                str(path),
            )
        model_conf = data.get("model_conf") or {}
        if not isinstance(model_conf, Mapping):
            raise UserError(f"section '{name}': model_conf must be a mapping", str(path))
        if model_conf.get("alignment") is not None:
            try:
                AlignmentConfig.from_dict(model_conf["alignment"])
            except ConfigError as e:
                raise UserError(f"section '{name}': model_conf.{e.what}", str(path)) from e
        out = cls(name, {k: v for k, v in data.items() if k not in ("model_conf", "blocks")}, dict(model_conf))
        for key, value in (("blocks", data.get("blocks")), ("model_conf.init_from_reference",
                                                            model_conf.get("init_from_reference"))):
            if value is not None:
                try:
                    blocks = parse_blocks(value)
                except UserError as e:
                    raise UserError(f"section '{name}': {key}: {e.what}", str(path)) from e
                if key == "blocks":
                    out.blocks = blocks
        return out


@dataclass
class StudentConfig:
    """A ``conf/student_r*.yaml``: how many blocks (``num_blocks`` or ``reduction``) + the sections."""

    path: Path
    num_blocks: Optional[int] = None
    reduction: Optional[float] = None
    sections: Dict[str, Section] = field(default_factory=lambda: {name: Section(name) for name in SECTIONS})

    @classmethod
    def from_dict(cls, data: Mapping, path: PathLike) -> "StudentConfig":
        path = Path(path)
        unknown = set(data) - set(TOP_KEYS)
        if unknown:
            raise UserError(f"unknown keys {sorted(unknown)}; known: {sorted(TOP_KEYS)}", str(path))
        if ("num_blocks" in data) == ("reduction" in data):
            raise UserError("give exactly one of num_blocks and reduction", str(path))
        out = cls(path)
        if "reduction" in data:
            red = data["reduction"]
            if isinstance(red, bool) or not isinstance(red, (int, float)) or not 0 < red < 1:
                raise UserError(f"reduction must be a fraction between 0 and 1, got {red!r}", str(path))
            out.reduction = float(red)
        else:
            nb = data["num_blocks"]
            if isinstance(nb, bool) or not isinstance(nb, int):
                raise UserError(f"num_blocks must be an integer, got {nb!r}", str(path))
            out.num_blocks = nb
        for name in SECTIONS:
            out.sections[name] = Section.from_dict(name, data.get(name), path)
        return out

    @classmethod
    def load(cls, path: PathLike) -> "StudentConfig":
        return cls.from_dict(load_yaml(path, "student config"), path)

    def blocks_for(self, ref_blocks: int) -> int:
        """The student's number of encoder blocks, for a reference with ``ref_blocks``."""
        if self.reduction is not None:
            nb = student_blocks(ref_blocks, self.reduction)
            logger.info("%s: reduction %.3f of %d reference blocks -> %d blocks", self.path, self.reduction,
                        ref_blocks, nb)
            return nb
        if not 1 <= self.num_blocks <= ref_blocks:
            raise UserError(f"num_blocks must be an integer between 1 and the reference's {ref_blocks}, "
                            f"got {self.num_blocks!r}", str(self.path))
        return self.num_blocks


def student_blocks(ref_blocks: int, reduction: float) -> int:
    """Blocks left after removing ``reduction`` of ``ref_blocks`` (at least 1, fewer than all)."""
    n = int(round(ref_blocks * (1.0 - reduction)))
    if not 1 <= n < ref_blocks:
        raise UserError(
            f"removing {reduction:.1%} of the reference's {ref_blocks} blocks leaves {n}: "
            "a student needs at least one block and fewer than the reference"
        )
    return n


# ------------------------------------------------------------------------------ the training configs
def base_config(ref: dict, num_blocks: int) -> dict:
    """What every training config of the student takes from the reference's config."""
    out = {k: copy.deepcopy(ref[k]) for k in INHERITED if k in ref}
    out["encoder_conf"] = dict(out.get("encoder_conf") or {}, num_blocks=num_blocks)
    # frontend_conf.fs and normalize are given by the stage driver, as for the reference
    if isinstance(out.get("frontend_conf"), dict):
        out["frontend_conf"].pop("fs", None)
    out["decoder"] = None
    out["best_model_criterion"] = [["valid", "loss", "min"]]
    return out


def section_config(base: dict, section: Section, model: str, model_conf: dict) -> dict:
    """``base`` with the section's overrides, as an ESPnet training config of ``model``."""
    out = copy.deepcopy(base)
    for k, v in section.overrides.items():
        out[k] = copy.deepcopy(v)
    out["model"] = model
    out["model_conf"] = model_conf
    return out


def make_configs(ref_config: Path, ref_model: Path, student: Path, mode: str,
                 reference_cache: Optional[str]) -> Dict[str, Union[dict, str]]:
    """The files of ``mode`` (name -> training config, or text for ``blocks.txt``)."""
    if mode not in MODES:
        raise UserError(f"mode must be one of {', '.join(sorted(MODES))}, got {mode!r}")
    ref = load_yaml(ref_config, "reference config")
    conf = StudentConfig.load(student)
    if ref.get("encoder") != "conformer":
        raise UserError(
            f"the reference encoder is '{ref.get('encoder')}', students are Conformer encoders with fewer blocks",
            str(ref_config),
        )
    ref_blocks = int((ref.get("encoder_conf") or {}).get("num_blocks", 0))
    base = base_config(ref, conf.blocks_for(ref_blocks))
    sections = conf.sections
    out: Dict[str, Union[dict, str]] = {}
    if mode == "encrl":
        mconf = dict(sections["encrl"].model_conf)
        mconf["reference_config"] = str(ref_config)
        mconf["reference_model"] = str(ref_model)
        if reference_cache:
            mconf["reference_cache"] = reference_cache
        out["encrl.yaml"] = section_config(base, sections["encrl"], "lw_encrl", mconf)
        out["finetune.yaml"] = section_config(base, sections["finetune"], "lw_ctc", {})
    elif mode == "scratch":
        out["scratch.yaml"] = section_config(base, sections["scratch"], "lw_ctc", {})
    else:
        pruned = sections["pruned"]
        out["finetune.yaml"] = section_config(base, pruned, "lw_ctc", {})
        blocks = pruned.blocks
        out["blocks.txt"] = ",".join(map(str, blocks)) if isinstance(blocks, list) else str(blocks)
    return out


def render(files: Dict[str, Union[dict, str]], student_config: PathLike, reference_config: PathLike) -> Dict[str, str]:
    """The text of each file: a header line + YAML for the configs, the line of ``blocks.txt``.

    (Kept in this exact format: :func:`check_unchanged` compares it with the files of students
    trained before.)
    """
    header = f"# written by espnet_lw.bin.make_student_configs from {student_config} and {reference_config}\n"
    return {name: content + "\n" if isinstance(content, str) else header + yaml.safe_dump(content, sort_keys=False)
            for name, content in files.items()}


def _body(text: str) -> List[str]:
    """The lines that configure something (comments such as the header are ignored)."""
    return [line for line in text.splitlines() if not line.lstrip().startswith("#")]


def check_unchanged(out: Path, texts: Dict[str, str], trained_dir: Path, student_config: PathLike) -> None:
    """Refuse to rewrite the configs of a student whose training (or part of it) has finished.

    Otherwise the finished stage would be skipped and the results would silently belong to the old
    config while its files claim the new one.
    """
    finished = sorted(str(m.parent) for m in trained_dir.glob("**/.done.stage11"))
    if not finished:
        return
    changed = [name for name, text in texts.items()
               if (out / name).is_file() and _body((out / name).read_text(encoding="utf-8")) != _body(text)]
    if changed:
        raise UserError(
            f"{student_config} now gives other {', '.join(changed)} than the one {finished[0]} was trained with",
            str(out / changed[0]),
            "pass --overwrite true to retrain this student (its old dir is kept as *.old.<time>), "
            "or use another --student_tag",
        )


def write_student_configs(reference_config: PathLike, reference_model: PathLike, student_config: PathLike,
                          mode: str, out_dir: PathLike, reference_cache: Optional[str] = None,
                          trained_dir: Optional[PathLike] = None) -> List[Path]:
    """Derive the training configs of ``mode`` and write them into ``out_dir``; the paths written.

    ``trained_dir``: the student's exp dir; when a training in it has finished (``.done.stage11``),
    configs in ``out_dir`` that would change are refused, not overwritten.
    """
    files = make_configs(Path(reference_config), Path(reference_model), Path(student_config), mode,
                         reference_cache)
    texts = render(files, student_config, reference_config)
    out = Path(out_dir)
    if trained_dir:
        check_unchanged(out, texts, Path(trained_dir), student_config)
    written = []
    for name, text in texts.items():
        atomic_write_text(out / name, text)
        logger.info("wrote %s", out / name)
        written.append(out / name)
    return written
