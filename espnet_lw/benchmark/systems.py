"""The systems of a benchmark: what the exp tree holds, and what benchmark.json says of each.

* :class:`SystemDir` - a trained model dir of the exp tree and what it is (found by
  :func:`discover_systems`: the reference(s) and the scratch / pruned / control / KD / EncRL
  students, one dir per seed);
* :class:`System` - one entry of benchmark.json's ``systems`` list (one run: its cost and its WERs),
  converted with :meth:`System.to_dict` / :meth:`System.from_dict`;
* what is read from a model dir: parameter count, final WERs, the reference-target cache time, the
  training audio.

A student's identity (mode, ratio, seed, init, epochs) comes from ``<exp>/conf/student.json``, which
stage 11 writes; exp dirs without it (trained before it existed) fall back to what their ``conf/``
dir holds (:func:`system_kind`), the ``_seed<N>`` suffix of their name and their ``config.yaml``.
The runs of one system (its seeds) share a *group*: the dir name without ``asr_`` and ``_seed<N>``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from espnet_lw.benchmark.ablation import loss_name
from espnet_lw.scoring import parse_result
from espnet_lw.utils.cli import UserError
from espnet_lw.utils.io import load_yaml

KINDS = ("reference", "scratch", "pruned", "control", "kd", "encrl")
#: the student kinds EncRL is compared against
BASELINES = ("scratch", "pruned", "control", "kd")
#: the kinds that read the reference-target cache (and so pay a share of it)
CACHE_USERS = ("kd", "encrl")
_SEED_SUFFIX = re.compile(r"_seed(\d+)$")
#: the decode dir whose sclite results are the "final" WER (stage 12's default tag)
DEFAULT_DECODE = "decode_ctc_greedy_asr_model_valid.loss.ave"
#: the name of the curve of the trainer's own validation CER (``[valid] cer_ctc`` of every epoch, on the
#: valid set: dev), usable wherever a decoded set's name is (a target, a cost to it)
VALID_CER = "valid_cer"


@dataclass
class System:
    """One system of benchmark.json: a reference or a student, its training cost and its WERs.

    The fields are benchmark.json's keys, in its order.
    """

    name: str
    kind: str  #: one of :data:`KINDS`
    ratio: Optional[float] = None  #: fraction of the reference's encoder blocks removed; None: unknown
    loss: Optional[str] = None  #: EncRL students: the alignment terms, e.g. "clip+mse"
    params: Optional[int] = None
    epochs: int = 0  #: CTC epochs (fine-tune epochs of an EncRL student)
    train_seconds: float = 0.0  #: see benchmark.json's ``definitions``
    wer: Dict[str, Optional[float]] = field(default_factory=dict)  #: final WER (%) per test set
    wer_per_epoch: Dict[str, List[Optional[float]]] = field(default_factory=dict)  #: None: epoch not decoded
    seconds_per_epoch: List[float] = field(default_factory=list)
    encrl_seconds: Optional[float] = None  #: EncRL students: summed EncRL epoch times
    encrl_epochs: Optional[int] = None
    group: Optional[str] = None  #: the system the run belongs to (its name without ``_seed<N>``)
    seed: Optional[int] = None
    init: Optional[str] = None  #: random | reference blocks (first, last, every_other, ...)
    identity: Optional[str] = None  #: where kind/seed/ratio came from: student.json | heuristics
    updates_per_epoch: List[Optional[int]] = field(default_factory=list)  #: optimizer steps; None: unknown
    encrl_updates: Optional[int] = None
    train_audio_seconds: Optional[float] = None  #: audio of one pass over the training set
    cache_share_seconds: float = 0.0  #: KD / EncRL: the run's share of the reference-target cache
    #: the trainer's validation CER (%) per CTC epoch (``[valid] cer_ctc``; None: not logged)
    valid_cer_per_epoch: List[Optional[float]] = field(default_factory=list)

    def wer_curve(self, dset: Optional[str]) -> List[Optional[float]]:
        """WER per epoch on ``dset`` (``[]`` when not decoded)."""
        return (self.wer_per_epoch or {}).get(dset) or []

    def curve(self, name: Optional[str]) -> List[Optional[float]]:
        """The per-epoch error curve called ``name``: :data:`VALID_CER` (the trainer's validation CER) or a
        decoded set's WER (:meth:`wer_curve`)."""
        return list(self.valid_cer_per_epoch or []) if name == VALID_CER else self.wer_curve(name)

    def to_dict(self) -> dict:
        """The system as benchmark.json holds it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "System":
        """A system of benchmark.json (keys left out take their defaults; unknown keys are refused)."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"unknown system keys {sorted(unknown)}; known: {known}")
        return cls(**copy.deepcopy(dict(data)))


@dataclass
class SystemDir:
    """A trained model dir of the exp tree and what it is."""

    name: str
    kind: str
    exp: Path
    conf: dict
    loss: Optional[str] = None
    ratio: Optional[float] = None  # None: no reference to compare with
    extra: dict = field(default_factory=dict)
    seed: Optional[int] = None
    init: Optional[str] = None
    identity: str = "heuristics"

    @property
    def group(self) -> str:
        """The system this run belongs to: the name without ``_seed<N>``."""
        return _SEED_SUFFIX.sub("", self.name)


def read_student_json(exp: Path) -> Optional[dict]:
    """``<exp>/conf/student.json`` (mode, ratio, seed, init, epochs), ``None`` if absent or unreadable."""
    path = exp / "conf" / "student.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        logging.warning("%s: unreadable (%s): falling back to the conf/ dir", path, e)
        return None
    return data if isinstance(data, dict) else None


def system_kind(exp: Path, conf: dict, student: Optional[dict] = None) -> Optional[str]:
    """One of :data:`KINDS`, from the model name, ``conf/student.json``'s mode, else the conf/ dir."""
    model = conf.get("model")
    if model == "lw_encrl":
        return None  # an EncRL stage, not a CTC model
    if model != "lw_ctc":
        return "reference"
    mode = (student or {}).get("mode")
    if mode in KINDS and mode != "reference":
        return mode
    if mode is not None:
        logging.warning("%s: unknown student mode %r in conf/student.json", exp, mode)
    for kind in ("kd", "control"):  # before the encrl / blocks.txt tests: these may write such files too
        if (exp / "conf" / f"{kind}.yaml").is_file():
            return kind
    if (exp / "encrl" / "config.yaml").is_file() or (exp / "conf" / "encrl.yaml").is_file():
        return "encrl"
    if (exp / "conf" / "blocks.txt").is_file():
        return "pruned"
    if (exp / "conf" / "scratch.yaml").is_file():
        return "scratch"
    return None


def _ratio_value(value) -> Optional[float]:
    """student.json's ratio as a fraction (``0.667``; ``67`` or ``"67"`` read as percent)."""
    try:
        r = float(value)
    except (TypeError, ValueError):
        return None
    return round(r / 100.0 if r > 1 else r, 3)


def _seed_of(name: str, conf: dict, student: Optional[dict]) -> Optional[int]:
    if student and student.get("seed") is not None:
        return int(student["seed"])
    m = _SEED_SUFFIX.search(name)
    if m:
        return int(m.group(1))
    return int(conf["seed"]) if isinstance(conf.get("seed"), int) else None


def _init_of(exp: Path, kind: str, student: Optional[dict], enc_conf: Optional[dict]) -> Optional[str]:
    if student and student.get("init") is not None:
        return str(student["init"])
    if kind == "scratch":
        return "random"
    if kind == "encrl" and enc_conf is not None:
        return (enc_conf.get("model_conf") or {}).get("init_from_reference") or "random"
    blocks = exp / "conf" / "blocks.txt"
    if blocks.is_file():
        return blocks.read_text(encoding="utf-8").strip() or None
    return None


def _num_blocks(conf: dict) -> Optional[int]:
    nb = (conf.get("encoder_conf") or {}).get("num_blocks")
    return int(nb) if nb is not None else None


def discover_systems(expdir: Path, ref_exp: Optional[Path] = None) -> List[SystemDir]:
    """Every trained CTC model of ``expdir/asr_*`` (dirs moved aside as ``*.old.*`` skipped)."""
    systems: List[SystemDir] = []
    for exp in sorted(expdir.glob("asr_*")):
        if not exp.is_dir() or ".old." in exp.name or exp.name.startswith("asr_stats"):
            continue
        cfg = exp / "config.yaml"
        if not cfg.is_file():
            continue
        conf = load_yaml(cfg, "training config", allow_empty=True)
        student = read_student_json(exp) if conf.get("model") == "lw_ctc" else None
        kind = system_kind(exp, conf, student)
        if kind is None:
            logging.warning("%s: not a reference or a student exp dir: left out", exp)
            continue
        name = exp.name[len("asr_"):]
        s = SystemDir(name=name, kind=kind, exp=exp, conf=conf, identity="student.json" if student else "heuristics")
        enc_conf = None
        # the KD term of the (final) CTC training: the kd baseline's, or an EncRL student's finetune.kd
        kd = (student or {}).get("kd") or ((conf.get("model_conf") or {}).get("kd"))
        if kind == "encrl":
            enc_cfg = exp / "encrl" / "config.yaml"
            enc_conf = load_yaml(enc_cfg if enc_cfg.is_file() else exp / "conf" / "encrl.yaml", "EncRL config",
                                 allow_empty=True)
            s.loss = loss_name((enc_conf.get("model_conf") or {}).get("alignment"))
            if isinstance(kd, dict) and kd:
                s.loss += "; fine-tune ctc+kd"
            s.extra["reference_config"] = (enc_conf.get("model_conf") or {}).get("reference_config")
        if kind == "kd":
            if isinstance(kd, dict) and kd:
                s.loss = "ctc+kd(" + ", ".join(f"{k}={v}" for k, v in sorted(kd.items())) + ")"
        if kind != "reference":
            s.seed = _seed_of(name, conf, student)
            s.init = _init_of(exp, kind, student, enc_conf)
            if student and student.get("ratio") is not None:
                s.extra["student_ratio"] = _ratio_value(student["ratio"])
            if student and student.get("epochs") is not None:
                s.extra["student_epochs"] = student["epochs"]
        systems.append(s)
    primary = primary_reference(systems, ref_exp)
    ref_blocks = _num_blocks(primary.conf) if primary else None
    for s in systems:
        nb = _num_blocks(s.conf)
        if s.kind == "reference":
            s.ratio = 0.0
        elif ref_blocks and nb:
            s.ratio = round(1.0 - nb / ref_blocks, 3)
        else:
            s.ratio = s.extra.get("student_ratio")
    order = {k: i for i, k in enumerate(KINDS)}
    systems.sort(key=lambda s: (-1 if s.ratio is None else s.ratio, order[s.kind], len(s.group), s.group,
                                -1 if s.seed is None else s.seed, s.name))
    return systems


def select_systems(systems: List[SystemDir], names: Sequence[str]) -> List[SystemDir]:
    """The systems named in ``names`` (all when empty); an unknown name is a ``UserError``."""
    if not names:
        return systems
    wanted = set(names)
    unknown = wanted - {s.name for s in systems}
    if unknown:
        raise UserError(f"unknown systems {sorted(unknown)}; known: {[s.name for s in systems]}")
    return [s for s in systems if s.name in wanted]


def primary_reference(systems: Sequence[SystemDir], ref_exp: Optional[Path] = None) -> Optional[SystemDir]:
    """The reference the students were made from: ``ref_exp`` if given, else the one the EncRL
    students' configs name, else the first reference."""
    refs = [s for s in systems if s.kind == "reference"]
    if ref_exp is not None:
        found = next((s for s in refs if s.exp.resolve() == ref_exp.resolve()), None)
        if found is None:
            raise UserError("not a reference exp dir under the expdir", str(ref_exp))
        return found
    pointed = {Path(s.extra["reference_config"]).parent.name for s in systems if s.extra.get("reference_config")}
    return next((s for s in refs if s.exp.name in pointed), refs[0] if refs else None)


def read_params(exp: Path) -> Optional[int]:
    """The parameter count of ``exp/params.txt`` (its first word), ``None`` when missing."""
    path = exp / "params.txt"
    if not path.is_file():
        return None
    first = (path.read_text(encoding="utf-8").split() or [""])[0]
    return int(first) if first.isdigit() else None


def final_wers(exp: Path, test_sets: Sequence[str], decode: Optional[str]) -> Dict[str, Optional[float]]:
    """sclite WER (%) of ``exp/<decode dir>/<set>/score_wer/result.txt`` per test set."""
    if decode:
        ddir = exp / decode
    else:
        dirs = sorted(p for p in exp.glob("decode_*") if p.is_dir())
        ddir = exp / DEFAULT_DECODE if (exp / DEFAULT_DECODE).is_dir() else (dirs[0] if dirs else None)
    out: Dict[str, Optional[float]] = {}
    for dset in test_sets:
        result = ddir / dset / "score_wer" / "result.txt" if ddir is not None else None
        out[dset] = parse_result(result).err if result is not None and result.is_file() else None
    return out


def reference_cache_seconds(expdir: Path, ref: Optional[SystemDir]) -> float:
    """Wall time of the reference-target dump: the last 'done' line of stage_times.tsv for it,
    else ``this_run.wall_seconds`` of the cache's info.yaml, else 0."""
    st = expdir / "stage_times.tsv"
    if st.is_file() and ref is not None:
        best = None
        for line in st.read_text(encoding="utf-8").splitlines():
            cells = line.split("\t")
            if len(cells) >= 4 and cells[1].startswith("reference targets ") and cells[3].strip() == "done" \
                    and f"{ref.exp.name}/targets/" in cells[1]:
                try:
                    best = float(cells[2])
                except ValueError:
                    pass
        if best is not None:
            return best
    if ref is not None:
        return cache_info_seconds(ref.exp) or 0.0
    return 0.0


def cache_info_seconds(ref_exp: Path) -> Optional[float]:
    """``this_run.wall_seconds`` of the first reference-target cache of ``ref_exp`` that records it."""
    for info in sorted(Path(ref_exp).glob("targets/*/info.yaml")):
        secs = ((load_yaml(info, "reference-target cache info", allow_empty=True).get("this_run") or {})
                .get("wall_seconds"))
        if secs:
            return float(secs)
    return None


def read_accum_grad(conf: dict) -> int:
    """``accum_grad`` of a training config (1 when absent)."""
    try:
        return max(int(conf.get("accum_grad") or 1), 1)
    except (TypeError, ValueError):
        return 1


def _fs_value(fs) -> Optional[float]:
    if fs is None:
        return None
    text = str(fs).strip().lower()
    try:
        return float(text[:-1]) * 1000.0 if text.endswith("k") else float(text)
    except ValueError:
        return None


_AUDIO_CACHE: Dict[str, Optional[float]] = {}


def train_audio_seconds(conf: dict, base: Optional[Path] = None) -> Optional[float]:
    """Seconds of audio in one pass over the training set of a training config: the sample counts of its
    first ``train_shape_file`` (``speech_shape``) over ``frontend_conf.fs``; ``None`` when unknown."""
    shapes = conf.get("train_shape_file") or []
    fs = _fs_value((conf.get("frontend_conf") or {}).get("fs")) or 16000.0
    if not shapes:
        return None
    path = Path(shapes[0])
    if not path.is_absolute() and base is not None:
        path = base / path
    key = f"{path.resolve()}:{fs}"
    if key not in _AUDIO_CACHE:
        total = None
        if path.is_file():
            total = 0.0
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                parts = line.split()
                if len(parts) >= 2:
                    try:
                        total += float(parts[1].split(",")[0])
                    except ValueError:
                        pass
            total = round(total / fs, 3)
        _AUDIO_CACHE[key] = total
    return _AUDIO_CACHE[key]
