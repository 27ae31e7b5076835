"""The ``alignment`` configuration of an EncRL model, typed and checked once.

``model_conf.alignment`` of an ``lw_encrl`` config (and the ``encrl.model_conf.alignment`` of a
student config) is read into an :class:`AlignmentConfig`::

    alignment:
      clip: {weight: 1.0, level: utterance, temperature: 0.07, learnable_temperature: false,
             max_scale: 100, normalize: false, projection: false, proj_dim: null, max_frames: 4096,
             exclude_neighbours: 0}
      mse:  {weight: 1.0, target: encoder}     # encoder | ctc_logp | both
      layers: {weight: 1.0}                    # intermediate blocks too (needs init_from_reference)

Every key of a term is optional; the defaults are the dataclass fields below (this is their only
home). A term is active when its key is present (not null) and its weight is > 0; at least one term
must be active. A key that is not known is refused with the list of the allowed ones, so that a typo
(``temprature``) is not silently ignored.

Errors are :class:`~espnet_lw.utils.cli.ConfigError` (a ``UserError`` that is also a ``ValueError``);
the callers, :class:`~espnet_lw.models.encrl.EncRLModel` and the student-config reader, say where
the config came from.
This module imports neither torch nor ESPnet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, Optional, Tuple, Union

from espnet_lw.utils.cli import ConfigError

#: what the MSE term compares
MSE_TARGETS = ("encoder", "ctc_logp", "both")
#: rows of the CLIP similarity matrix: time-averaged utterances or single frames
CLIP_LEVELS = ("utterance", "frame")


def _allowed(cls) -> Tuple[str, ...]:
    return tuple(sorted(f.name for f in fields(cls)))


def _check_keys(conf: Mapping, cls, where: str, allowed_text: Optional[str] = None) -> None:
    bad = set(conf) - set(_allowed(cls))
    if bad:
        raise ConfigError(f"{where}: unknown keys {sorted(bad)} (allowed: {allowed_text or list(_allowed(cls))})")


def _number(value: Any, where: str, *, positive: bool = False) -> float:
    """A float from an int / float (not a bool); ``positive``: > 0, else >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    if positive and not value > 0:
        raise ConfigError(f"{where} must be > 0, got {value}")
    if not positive and not value >= 0:
        raise ConfigError(f"{where} must be >= 0, got {value}")
    return float(value)


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    return value


def _count(value: Any, where: str) -> Optional[int]:
    """A positive int, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{where} must be a positive integer or null, got {value!r}")
    return int(value)


class _Term:
    """What the alignment terms share: reading from a YAML mapping (unknown keys named) and
    ``active`` (weight > 0). Subclasses are frozen dataclasses with a ``weight`` field."""

    _NAMES = {"ClipConfig": "clip", "MseConfig": "mse", "LayersConfig": "layers"}

    @classmethod
    def from_dict(cls, conf: Optional[Mapping]):
        conf = dict(conf or {})
        _check_keys(conf, cls, f"alignment.{cls._NAMES[cls.__name__]}")
        out = cls(**conf)
        out.validate()
        return out

    @property
    def active(self) -> bool:
        return float(self.weight) > 0


@dataclass(frozen=True)
class ClipConfig(_Term):
    """The CLIP (contrastive) term; see :func:`espnet_lw.losses.alignment.clip_loss`.

    ``projection``: add Linear heads student->``proj_dim`` and reference->``proj_dim`` (forced on
    when the two widths differ); ``proj_dim`` defaults to the reference width. ``max_scale`` clamps
    a learnable temperature's ``1/T``; ``max_frames`` bounds the frames of ``level: frame``;
    ``exclude_neighbours: N`` (``level: frame``) leaves the frames of a frame's own utterance at most N
    frames away out of its negatives.
    """

    weight: float = 1.0
    level: str = "utterance"
    temperature: float = 0.07
    learnable_temperature: bool = False
    max_scale: float = 100.0
    normalize: bool = False
    projection: bool = False
    proj_dim: Optional[int] = None
    max_frames: Optional[int] = 4096
    exclude_neighbours: int = 0

    def validate(self) -> None:
        _number(self.weight, "alignment.clip.weight")
        if self.level not in CLIP_LEVELS:
            raise ConfigError(f"alignment.clip.level must be utterance or frame, got {self.level!r}")
        _number(self.temperature, "alignment.clip.temperature", positive=True)
        _flag(self.learnable_temperature, "alignment.clip.learnable_temperature")
        _number(self.max_scale, "alignment.clip.max_scale", positive=True)
        _flag(self.normalize, "alignment.clip.normalize")
        _flag(self.projection, "alignment.clip.projection")
        _count(self.proj_dim, "alignment.clip.proj_dim")
        _count(self.max_frames, "alignment.clip.max_frames")
        if isinstance(self.exclude_neighbours, bool) or not isinstance(self.exclude_neighbours, int) \
                or self.exclude_neighbours < 0:
            raise ConfigError(f"alignment.clip.exclude_neighbours must be an integer >= 0, "
                              f"got {self.exclude_neighbours!r}")
        if self.exclude_neighbours and self.level != "frame":
            raise ConfigError("alignment.clip.exclude_neighbours needs level: frame (utterance-level rows "
                              "have no neighbouring frames)")


@dataclass(frozen=True)
class MseConfig(_Term):
    """The MSE term: ``target`` ``encoder`` (encoder outputs, through a student->reference Linear
    when the widths differ), ``ctc_logp`` (the two CTC heads' log-posteriors) or ``both``."""

    weight: float = 1.0
    target: str = "encoder"

    def validate(self) -> None:
        _number(self.weight, "alignment.mse.weight")
        if self.target not in MSE_TARGETS:
            raise ConfigError(f"alignment.mse.target must be one of {MSE_TARGETS}, got {self.target!r}")

    @property
    def uses_encoder(self) -> bool:
        return self.target in ("encoder", "both")

    @property
    def uses_logp(self) -> bool:
        return self.target in ("ctc_logp", "both")


@dataclass(frozen=True)
class LayersConfig(_Term):
    """The intermediate-block term: each student block but the last is pulled towards the output of
    the reference block it was initialised from (``init_from_reference``), both layer-normalised
    (no affine: scale and offset of a frame do not count), MSE over the valid frames, averaged over
    the blocks. The reference runs on the fly for it (a target cache holds the outputs only)."""

    weight: float = 1.0

    def validate(self) -> None:
        _number(self.weight, "alignment.layers.weight")


AlignmentLike = Union["AlignmentConfig", Mapping, None]
#: the terms of the alignment loss, in the order of AlignmentConfig's fields
TERMS = ("clip", "mse", "layers")


@dataclass(frozen=True)
class AlignmentConfig:
    """The terms of the alignment loss (``None``: the term is not configured)."""

    clip: Optional[ClipConfig] = None
    mse: Optional[MseConfig] = None
    layers: Optional[LayersConfig] = None

    @classmethod
    def default(cls) -> "AlignmentConfig":
        """What an ``lw_encrl`` model without ``model_conf.alignment`` uses: both terms, their defaults."""
        return cls(clip=ClipConfig(), mse=MseConfig())

    @classmethod
    def from_dict(cls, conf: Optional[Mapping]) -> "AlignmentConfig":
        """Read and check a YAML mapping (``ValueError`` on an unknown key or a bad value)."""
        if conf is not None and not isinstance(conf, Mapping):
            raise ConfigError(f"alignment must be a mapping with the keys {', '.join(TERMS)}, got {conf!r}")
        conf = dict(conf or {})
        _check_keys(conf, cls, "alignment", ", ".join(TERMS))
        if not conf:
            raise ConfigError(f"alignment: give at least one of {', '.join(repr(t) for t in TERMS)}")
        for name in TERMS:
            if conf.get(name) is not None and not isinstance(conf[name], Mapping):
                raise ConfigError(f"alignment.{name} must be a mapping, got {conf[name]!r}")
        readers = {"clip": ClipConfig, "mse": MseConfig, "layers": LayersConfig}
        out = cls(**{name: readers[name].from_dict(conf[name]) for name in TERMS if conf.get(name) is not None})
        out._check_some_term()
        return out

    def _check_some_term(self) -> None:
        if self.active_clip is None and self.active_mse is None and self.active_layers is None:
            raise ConfigError("alignment: every term has weight 0")

    @classmethod
    def coerce(cls, conf: AlignmentLike) -> "AlignmentConfig":
        """An :class:`AlignmentConfig` as is (checked again), or one read from a mapping."""
        if isinstance(conf, cls):
            for term in (conf.clip, conf.mse, conf.layers):
                if term is not None:
                    term.validate()
            conf._check_some_term()
            return conf
        return cls.from_dict(conf)

    @property
    def active_clip(self) -> Optional[ClipConfig]:
        """The CLIP term when it counts (configured, weight > 0)."""
        return self.clip if self.clip is not None and self.clip.active else None

    @property
    def active_mse(self) -> Optional[MseConfig]:
        """The MSE term when it counts (configured, weight > 0)."""
        return self.mse if self.mse is not None and self.mse.active else None

    @property
    def active_layers(self) -> Optional[LayersConfig]:
        """The intermediate-block term when it counts (configured, weight > 0)."""
        return self.layers if self.layers is not None and self.layers.active else None

    def to_dict(self) -> dict:
        """The configured terms with every key written out."""
        return {name: asdict(getattr(self, name)) for name in TERMS if getattr(self, name) is not None}


#: the linear-CTC model's model_conf keys that only shape training (the KD term): packing, export and
#: field adaptation drop them, so that a KD student is a plain CTC model outside its own training.
#: Here, not in espnet_lw.models.linear_ctc, so that reading them needs no ESPnet import.
LW_CTC_TRAINING_ONLY_KEYS = ("kd", "kd_length_tolerance")


# ------------------------------------------------------------------------------ knowledge distillation
@dataclass(frozen=True)
class KDConfig:
    """Logit knowledge distillation to the reference's CTC posteriors (``kd`` of a student config,
    ``model_conf.kd`` of an ``lw_ctc`` model; see :func:`espnet_lw.losses.distill.kd_loss`).

    The training loss becomes ``CTC + weight * T^2 * KL(p_ref^T || p_student^T)`` with ``T`` the
    ``temperature`` that softens both distributions (Hinton et al.'s scaling keeps the gradient's
    size independent of ``T``).
    """

    weight: float = 1.0
    temperature: float = 2.0

    @classmethod
    def from_dict(cls, conf: Optional[Mapping], where: str = "kd") -> "KDConfig":
        """Read and check a YAML mapping (``ConfigError`` naming ``where`` on an unknown key or a bad value)."""
        if conf is not None and not isinstance(conf, Mapping):
            raise ConfigError(f"{where} must be a mapping with the keys weight and temperature, got {conf!r}")
        conf = dict(conf or {})
        _check_keys(conf, cls, where)
        out = cls(**conf)
        out.validate(where)
        return out

    @classmethod
    def coerce(cls, conf: Union["KDConfig", Mapping, None], where: str = "kd") -> "KDConfig":
        if isinstance(conf, cls):
            conf.validate(where)
            return conf
        return cls.from_dict(conf, where)

    def validate(self, where: str = "kd") -> None:
        _number(self.weight, f"{where}.weight", positive=True)
        _number(self.temperature, f"{where}.temperature", positive=True)

    def to_dict(self) -> dict:
        return asdict(self)
