"""The adaptation config (``conf/adapt*.yaml``): typed, checked, unknown keys refused.

Example (every key optional; the defaults are those of :class:`AdaptConfig`)::

    epochs: 5                 # passes over the field data
    lr: 0.0005                # peak learning rate (the reference trains at 0.002)
    warmup_steps: 0           # 0: constant learning rate; N: ESPnet's warmuplr peaking at lr after N updates
    batch_size: 16            # utterances per batch (field + replayed)
    freeze: [encoder.embed, encoder.encoders.0]   # parameter-name prefixes kept fixed (ESPnet --freeze_param)
    replay: 0.25              # share of every batch drawn from the original training data (0: none)
    minutes: null             # use only this many minutes of the adapt set (null: all of it)
    valid_share: 0.1          # share of the adapt set held out to pick checkpoints (0: validate on the adapt set)
    average: 1                # checkpoints (best valid loss) averaged into the adapted model
    noise_scp: data/noise/wav.scp   # noise added by ESPnet's preprocessor (Kaldi "id path"); null: none
    noise_apply_prob: 0.5     # share of training utterances that get noise
    noise_db_range: [5, 20]   # SNR range in dB (a number: fixed SNR)
    seed: 0

:meth:`AdaptConfig.load` reads a file; :meth:`AdaptConfig.from_dict` checks a mapping. Every
problem is a :class:`~espnet_lw.utils.cli.ConfigError` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from espnet_lw.utils.cli import ConfigError
from espnet_lw.utils.io import load_yaml

PathLike = Union[str, Path]


@dataclass
class AdaptConfig:
    """What one adaptation does (see the module docstring for the meaning of each key)."""

    epochs: int = 5
    lr: float = 0.0005
    warmup_steps: int = 0
    batch_size: int = 16
    freeze: List[str] = field(default_factory=list)
    replay: float = 0.0
    minutes: Optional[float] = None
    valid_share: float = 0.1
    average: int = 1
    noise_scp: Optional[str] = None
    noise_apply_prob: float = 0.5
    noise_db_range: Tuple[float, float] = (5.0, 20.0)
    seed: int = 0

    # ------------------------------------------------------------------ reading
    @classmethod
    def load(cls, path: PathLike) -> "AdaptConfig":
        """Read and check ``path`` (an empty file gives the defaults)."""
        return cls.from_dict(load_yaml(path, "adaptation config", allow_empty=True), str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "adaptation config") -> "AdaptConfig":
        """Check a mapping: known keys, right types and ranges."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"unknown key(s) {', '.join(unknown)}; the keys are: {', '.join(names)}", where)
        out = cls()
        for key, value in data.items():
            setattr(out, key, _CHECKS[key](key, value, where))
        return out

    def as_dict(self) -> Dict[str, Any]:
        """Plain values (YAML / JSON), the SNR range as a list."""
        d = dataclasses.asdict(self)
        d["noise_db_range"] = list(self.noise_db_range)
        return d

    @property
    def noise_db_range_str(self) -> str:
        """ESPnet's ``--noise_db_range`` form: ``"lo_hi"`` (or one number for a fixed SNR)."""
        lo, hi = self.noise_db_range
        return f"{lo:g}" if lo == hi else f"{lo:g}_{hi:g}"


# ---------------------------------------------------------------------- value checks
def _number(key: str, value: Any, where: str, lo: float, hi: float, lo_open=False, hi_open=False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key} must be a number, got {value!r}", where)
    v = float(value)
    bad = v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi)
    if bad:
        rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ConfigError(f"{key} must be in {rng}, got {value!r}", where)
    return v


def _integer(key: str, value: Any, where: str, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be an integer, got {value!r}", where)
    if value < lo:
        raise ConfigError(f"{key} must be >= {lo}, got {value}", where)
    return value


def _freeze(key: str, value: Any, where: str) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{key} must be a list of parameter-name prefixes (e.g. [encoder.embed, "
                          f"encoder.encoders.0]), got {value!r}", where)
    return [v.strip().rstrip(".") for v in value]


def _optional_path(key: str, value: Any, where: str) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key} must be a path or null, got {value!r}", where)
    return value.strip()


def _db_range(key: str, value: Any, where: str) -> Tuple[float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), float(value)
    if (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            and value[0] <= value[1]):
        return float(value[0]), float(value[1])
    raise ConfigError(f"{key} must be [low, high] in dB (low <= high) or one number, got {value!r}", where)


def _optional_minutes(key: str, value: Any, where: str) -> Optional[float]:
    return None if value is None else _number(key, value, where, 0.0, float("inf"), lo_open=True)


_CHECKS = {
    "epochs": lambda k, v, w: _integer(k, v, w, 1),
    "lr": lambda k, v, w: _number(k, v, w, 0.0, 1.0, lo_open=True),
    "warmup_steps": lambda k, v, w: _integer(k, v, w, 0),
    "batch_size": lambda k, v, w: _integer(k, v, w, 1),
    "freeze": _freeze,
    "replay": lambda k, v, w: _number(k, v, w, 0.0, 1.0, hi_open=True),
    "minutes": _optional_minutes,
    "valid_share": lambda k, v, w: _number(k, v, w, 0.0, 0.5),
    "average": lambda k, v, w: _integer(k, v, w, 1),
    "noise_scp": _optional_path,
    "noise_apply_prob": lambda k, v, w: _number(k, v, w, 0.0, 1.0),
    "noise_db_range": _db_range,
    "seed": lambda k, v, w: _integer(k, v, w, 0),
}
