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
        # kd: {weight: 1.0, temperature: 2.0}   # optional: + KL to the reference's CTC posteriors
    scratch:                      # baseline: the same student, CTC from random init
        max_epoch: 15
    pruned:                       # baseline: reference blocks (last|first|every_other|[i,..]) + CTC
        blocks: last
    control:                      # baseline: the EncRL student's init + the fine-tune's schedule, no EncRL
    kd:                           # baseline: control + KL to the reference's CTC posteriors
        weight: 1.0
        temperature: 2.0

Everything else (features, SpecAugment, encoder width and layout, optimiser, batch size) is
taken from the reference's ``config.yaml`` (:data:`INHERITED`), so a student always matches its
reference. Keys in a section other than ``model_conf`` / ``blocks`` (and ``weight`` /
``temperature`` of ``kd``) override the reference's training keys (``optim_conf``, ``max_epoch``,
``batch_bins`` ...).

The modes (:data:`MODES`) and what each trains:

* ``encrl``: EncRL (section ``encrl``), then the linear-CTC fine-tune (section ``finetune``; with
  ``finetune.kd`` the fine-tune adds the kd mode's KL term, read from the same target cache);
* ``scratch``: CTC from random init (``scratch``);
* ``pruned``: CTC from the reference blocks ``pruned.blocks`` (default ``last``, the paper's
  "delete the first blocks");
* ``control``: CTC from the EncRL student's own init (``blocks``, default
  ``encrl.model_conf.init_from_reference``) with the fine-tune's settings (its schedule, warm-up,
  optimiser: every ``finetune`` key), no EncRL step;
* ``kd``: as ``control`` plus ``weight * T^2 * KL`` to the reference's cached CTC posteriors
  (``weight`` / ``temperature``: :class:`espnet_lw.losses.config.KDConfig`).

Every mode trains :func:`total_epochs` (EncRL + fine-tune epochs) unless its section sets
``max_epoch``.

:meth:`StudentConfig.load` reads and checks the file (an unknown key is refused with the allowed
ones and the file's name); :func:`make_configs` derives the training configs of a mode
(``encrl.yaml`` + ``finetune.yaml``, ``scratch.yaml``, ``finetune.yaml`` + ``blocks.txt`` (pruned),
``control.yaml`` / ``kd.yaml`` (+ ``init_blocks.txt``)) and ``student.json`` (the student's identity:
mode, ratio, seed, init, epochs); :func:`write_student_configs` writes them, refusing to change
those of a trained student.
This module imports neither torch nor ESPnet.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import yaml

from espnet_lw.losses.config import AlignmentConfig, KDConfig
from espnet_lw.models.blocks import parse_blocks
from espnet_lw.models.targets import check_reference_cache
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
SECTIONS = ("encrl", "finetune", "scratch", "pruned", "control", "kd")
#: keys of a section besides the inherited ones it may override
SECTION_KEYS = ("model_conf", "blocks", "best_model_criterion")
#: keys of the kd section only (espnet_lw.losses.config.KDConfig)
KD_KEYS = ("weight", "temperature")
TOP_KEYS = ("num_blocks", "reduction") + SECTIONS
#: the sections each mode trains
MODES = {"encrl": ("encrl", "finetune"), "scratch": ("scratch",), "pruned": ("pruned",),
         "control": ("control",), "kd": ("kd",)}
#: the reference blocks a pruned student keeps unless pruned.blocks says otherwise (the paper's baseline)
PRUNED_DEFAULT_BLOCKS = "last"


# ------------------------------------------------------------------------------ the schema
@dataclass
class Section:
    """One training of a student: reference keys it overrides, its ``model_conf``, its blocks."""

    name: str
    overrides: Dict[str, Any] = field(default_factory=dict)  #: INHERITED keys / best_model_criterion
    model_conf: Dict[str, Any] = field(default_factory=dict)  #: lw_encrl's model_conf (section encrl)
    #: sections pruned / control / kd: the reference blocks the student starts from (None: the mode's default)
    blocks: Union[None, str, List[int]] = None
    kd: Optional[KDConfig] = None  #: sections kd and finetune: the KD term (weight, temperature)

    @classmethod
    def from_dict(cls, name: str, data: Any, path: Path) -> "Section":
        if data is None:
            return cls(name, kd=KDConfig() if name == "kd" else None)
        if not isinstance(data, Mapping):
            raise UserError(f"section '{name}' must be a mapping", str(path))
        own = SECTION_KEYS + (KD_KEYS if name == "kd" else ()) + (("kd",) if name == "finetune" else ())
        bad = set(data) - set(INHERITED) - set(own)
        if bad:
            raise UserError(
                f"section '{name}': unknown keys {sorted(bad)}; allowed: {', '.join(own)} and {', '.join(INHERITED)}",
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
        if "kd" in model_conf:  # the KD term has its own keys: under kd: (section kd) or finetune.kd
            where = {"kd": ": give weight and temperature directly under kd:, not in model_conf.kd",
                     "finetune": ": model_conf.kd is not a key here (give finetune.kd: {weight, temperature})"}
            raise UserError(f"section '{name}'" + where.get(name, ": model_conf.kd is not a key here"), str(path))
        out = cls(name, {k: v for k, v in data.items() if k not in ("model_conf", "blocks", "kd") + KD_KEYS},
                  dict(model_conf))
        try:
            if name == "kd":
                out.kd = KDConfig.from_dict({k: data[k] for k in KD_KEYS if k in data}, "kd")
            elif name == "finetune" and data.get("kd") is not None:
                out.kd = KDConfig.from_dict(data["kd"], "finetune.kd")
        except ConfigError as e:
            raise UserError(f"section '{name}': {e.what}", str(path)) from e
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


def section_epochs(base: dict, section: Section) -> int:
    """The epochs a section trains when it does not derive them: its ``max_epoch`` or the reference's."""
    value = section.overrides.get("max_epoch", base.get("max_epoch"))
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"section '{section.name}': max_epoch must be a positive integer, got {value!r}")
    return value


def total_epochs(base: dict, sections: Mapping[str, Section]) -> int:
    """The epochs of the EncRL student (EncRL + fine-tune): what every other mode trains by default."""
    return section_epochs(base, sections["encrl"]) + section_epochs(base, sections["finetune"])


def _blocks_text(blocks: Union[str, List[int]]) -> str:
    return ",".join(map(str, blocks)) if isinstance(blocks, list) else str(blocks)


def _init_blocks(sections: Mapping[str, Section], mode: str) -> Union[None, str, List[int]]:
    """The reference blocks a student of ``mode`` starts from (None: random init)."""
    if mode == "pruned":
        return sections["pruned"].blocks or PRUNED_DEFAULT_BLOCKS
    if mode in ("control", "kd"):
        if sections[mode].blocks is not None:
            return sections[mode].blocks
        init = sections["encrl"].model_conf.get("init_from_reference")
        return parse_blocks(init) if init is not None else None
    if mode == "encrl":
        init = sections["encrl"].model_conf.get("init_from_reference")
        return parse_blocks(init) if init is not None else None
    return None


def _derived_section(base: dict, sections: Mapping[str, Section], mode: str) -> Section:
    """The section a mode trains with its defaults filled in: ``max_epoch`` (the EncRL student's total)
    and, for control / kd, every key of the fine-tune (schedule, warm-up, optimiser) under its own."""
    own = sections[mode]
    overrides: Dict[str, Any] = {}
    if mode in ("control", "kd"):
        overrides.update({k: v for k, v in sections["finetune"].overrides.items() if k != "max_epoch"})
    overrides["max_epoch"] = total_epochs(base, sections)
    overrides.update(own.overrides)
    return Section(own.name, overrides, dict(own.model_conf), own.blocks, own.kd)


def _aligns_layers(alignment: Any, student: Path) -> bool:
    """Whether ``encrl.model_conf.alignment`` has an active intermediate-block term (``layers``)."""
    if not alignment:
        return False
    try:
        return AlignmentConfig.coerce(alignment).active_layers is not None
    except ConfigError as e:
        raise UserError(f"encrl.model_conf.{e.what}", str(student),
                        "see espnet_lw/losses/config.py for the keys and values") from e


def make_configs(ref_config: Path, ref_model: Path, student: Path, mode: str,
                 reference_cache: Optional[str], seed: Optional[int] = None) -> Dict[str, Union[dict, str]]:
    """The files of ``mode``: name -> training config (``*.yaml``), text (``blocks.txt`` /
    ``init_blocks.txt``) or the identity record ``student.json`` (a dict).

    ``seed``: the trainer's seed of every training of the student (default: the reference's).
    ``reference_cache`` (modes encrl, kd): the reference-target cache; kd refuses one without the
    reference's CTC log-posteriors, made with another reference or from other data.
    """
    if mode not in MODES:
        raise UserError(f"mode must be one of {', '.join(sorted(MODES))}, got {mode!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise UserError(f"the student's seed must be an integer >= 0, got {seed!r}")
    ref = load_yaml(ref_config, "reference config")
    conf = StudentConfig.load(student)
    if ref.get("encoder") != "conformer":
        raise UserError(
            f"the reference encoder is '{ref.get('encoder')}', students are Conformer encoders with fewer blocks",
            str(ref_config),
        )
    ref_blocks = int((ref.get("encoder_conf") or {}).get("num_blocks", 0))
    num_blocks = conf.blocks_for(ref_blocks)
    base = base_config(ref, num_blocks)
    if seed is not None:
        base["seed"] = seed
    sections = conf.sections
    out: Dict[str, Union[dict, str]] = {}
    trainings: Dict[str, int] = {}
    if mode == "encrl":
        mconf = dict(sections["encrl"].model_conf)
        mconf["reference_config"] = str(ref_config)
        mconf["reference_model"] = str(ref_model)
        if reference_cache and _aligns_layers(mconf.get("alignment"), student):
            # the intermediate-block term runs the reference on the fly: its cached outputs would be read
            # and discarded every batch (lw.sh hands the cache to the data loader only when this key is set)
            logger.info("%s: encrl.model_conf.alignment.layers runs the reference on the fly, so the EncRL "
                        "step does not read the cached reference outputs", student)
        elif reference_cache:
            mconf["reference_cache"] = reference_cache
        out["encrl.yaml"] = section_config(base, sections["encrl"], "lw_encrl", mconf)
        ft_kd = sections["finetune"].kd
        if ft_kd is not None:
            if not reference_cache:
                raise UserError("finetune.kd reads the reference's CTC posteriors from the target cache, and "
                                "there is none (lw.sh: --ref_cache true)", str(student))
            check_reference_cache(reference_cache, ref_config, ref_model, ["logp"])
        out["finetune.yaml"] = section_config(base, sections["finetune"], "lw_ctc",
                                              {"kd": ft_kd.to_dict()} if ft_kd is not None else {})
        trainings = {"encrl": section_epochs(base, sections["encrl"]),
                     "finetune": section_epochs(base, sections["finetune"])}
    elif mode == "scratch":
        section = _derived_section(base, sections, mode)
        out["scratch.yaml"] = section_config(base, section, "lw_ctc", {})
        trainings = {"scratch": section.overrides["max_epoch"]}
    elif mode == "pruned":
        # (finetune.yaml + blocks.txt: the layout of pruned students trained before student.json existed)
        section = _derived_section(base, sections, mode)
        out["finetune.yaml"] = section_config(base, section, "lw_ctc", {})
        out["blocks.txt"] = _blocks_text(_init_blocks(sections, mode))
        trainings = {"pruned": section.overrides["max_epoch"]}
    else:  # control, kd
        section = _derived_section(base, sections, mode)
        mconf = dict(section.model_conf)
        if mode == "kd":
            if reference_cache:
                check_reference_cache(reference_cache, ref_config, ref_model, ["logp"])
            mconf["kd"] = section.kd.to_dict()
        out[f"{mode}.yaml"] = section_config(base, section, "lw_ctc", mconf)
        init = _init_blocks(sections, mode)
        if init is None:
            logger.warning("%s: encrl.model_conf.init_from_reference is null, so the %s student starts from "
                           "random weights (the fine-tune's schedule, no EncRL)", student, mode)
        else:
            out["init_blocks.txt"] = _blocks_text(init)
        trainings = {mode: section.overrides["max_epoch"]}
    init = _init_blocks(sections, mode)
    training_seed = next(c for c in out.values() if isinstance(c, dict)).get("seed", 0)
    out["student.json"] = {
        "mode": mode,
        "student_config": Path(student).name,
        "ratio": conf.reduction if conf.reduction is not None else round(1.0 - num_blocks / ref_blocks, 3),
        "num_blocks": num_blocks,
        "reference_blocks": ref_blocks,
        "seed": training_seed,
        "init": "random" if init is None else _blocks_text(init),
        "epochs": sum(trainings.values()),
        "trainings": trainings,
        "kd": (sections["kd"].kd.to_dict() if mode == "kd" else
               sections["finetune"].kd.to_dict() if mode == "encrl" and sections["finetune"].kd else None),
    }
    return out


def render(files: Dict[str, Union[dict, str]], student_config: PathLike, reference_config: PathLike) -> Dict[str, str]:
    """The text of each file: a header line + YAML for the configs, the line of ``blocks.txt``,
    the JSON of ``student.json``.

    (Kept in this exact format: :func:`check_unchanged` compares it with the files of students
    trained before.)
    """
    header = f"# written by espnet_lw.bin.make_student_configs from {student_config} and {reference_config}\n"
    out = {}
    for name, content in files.items():
        if isinstance(content, str):
            out[name] = content + "\n"
        elif name.endswith(".json"):
            out[name] = json.dumps(content, indent=1) + "\n"
        else:
            out[name] = header + yaml.safe_dump(content, sort_keys=False)
    return out


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
                          trained_dir: Optional[PathLike] = None, seed: Optional[int] = None) -> List[Path]:
    """Derive the training configs of ``mode`` and write them into ``out_dir``; the paths written.

    ``trained_dir``: the student's exp dir; when a training in it has finished (``.done.stage11``),
    configs in ``out_dir`` that would change are refused, not overwritten.
    """
    files = make_configs(Path(reference_config), Path(reference_model), Path(student_config), mode,
                         reference_cache, seed)
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
