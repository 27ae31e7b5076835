"""Derived EncRL student configs: the one-term loss ablations and the EncRL-epoch budget of a config.

At ``--ablation_ratio`` the benchmark trains EncRL students with one alignment term only
(``student_rNN_encrl_mse``, ``student_rNN_encrl_clip``), from configs derived from the shipped
``conf/student_rNN.yaml`` and written to ``<expdir>/benchmark/conf/``. With ``--budget_config`` (the
paper's setting, ``conf/student_r67_paper.yaml``) and ``--budget_epochs "3 8 16"`` it also trains that
config with each number of EncRL epochs (``<stem>_e<N>``, the fine-tune unchanged): how much EncRL a
setting needs before it beats scratch.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Dict, Optional, Sequence

import yaml

from espnet_lw.utils.cli import UserError
from espnet_lw.utils.io import atomic_write_text, load_yaml

#: alignment terms in the order used in loss names ("clip+mse")
TERM_ORDER = ("clip", "mse", "layers")


def ordered_terms(terms) -> list:
    """The known terms in :data:`TERM_ORDER`, then the others sorted."""
    terms = list(terms)
    return [t for t in TERM_ORDER if t in terms] + sorted(t for t in terms if t not in TERM_ORDER)


def loss_name(alignment: Optional[dict]) -> str:
    """``{"clip": {...}, "mse": {...}}`` -> ``"clip+mse"`` (terms with weight > 0; known terms first)."""
    alignment = alignment if alignment is not None else {"clip": {}, "mse": {}}  # the model's default
    active = [k for k, v in alignment.items() if float((v or {}).get("weight", 1.0)) > 0]
    return "+".join(ordered_terms(active))


def derive_ablation(student: dict, keep: str) -> dict:
    """A copy of a student config whose EncRL alignment keeps only the term ``keep``, at weight 1.

    (Alone, a term's weight would only scale the loss; 1 keeps the ablation's logs readable.)
    """
    conf = copy.deepcopy(student)
    align = (((conf.get("encrl") or {}).get("model_conf") or {}).get("alignment"))
    if not isinstance(align, dict) or keep not in align:
        have = sorted(align) if isinstance(align, dict) else []
        raise UserError(f"the student config's encrl.model_conf.alignment has no '{keep}' term (it has {have})")
    conf["encrl"]["model_conf"]["alignment"] = {keep: {**copy.deepcopy(align[keep] or {}), "weight": 1.0}}
    return conf


def write_ablation_configs(student_config: Path, out_dir: Path, stem: str) -> Dict[str, Path]:
    """Write ``<out_dir>/<stem>_encrl_<term>.yaml`` for each alignment term, and ``<stem>_encrl_nokd.yaml``
    when the fine-tune has a KD term (``finetune.kd``); ``{term or "nokd": path}``."""
    if not student_config.is_file():
        raise UserError("no such student config", str(student_config), "see conf/student_r*.yaml")
    student = load_yaml(student_config, "student config", allow_empty=True)
    align = ((student.get("encrl") or {}).get("model_conf") or {}).get("alignment") or {}
    if len(align) < 2:
        raise UserError(f"an ablation needs at least two alignment terms, found {sorted(align)}", str(student_config))
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for term in ordered_terms(align):
        path = out_dir / f"{stem}_encrl_{term}.yaml"
        header = (f"# written by espnet_lw.bin.benchmark: {student_config} with only the '{term}' "
                  "alignment term (loss ablation)\n")
        atomic_write_text(path, header + yaml.safe_dump(derive_ablation(student, term), sort_keys=False))
        paths[term] = path
    if (student.get("finetune") or {}).get("kd"):
        path = out_dir / f"{stem}_encrl_nokd.yaml"
        header = (f"# written by espnet_lw.bin.benchmark: {student_config} without the KD term of its fine-tune "
                  "(ablation: EncRL alone)\n")
        atomic_write_text(path, header + yaml.safe_dump(derive_without_finetune_kd(student), sort_keys=False))
        paths["nokd"] = path
    return paths


def derive_without_finetune_kd(student: dict) -> dict:
    """A copy of a student config whose fine-tune has no KD term (``finetune.kd`` dropped)."""
    conf = copy.deepcopy(student)
    if not (conf.get("finetune") or {}).get("kd"):
        raise UserError("the student config's fine-tune has no kd term to leave out")
    del conf["finetune"]["kd"]
    return conf


def derive_encrl_epochs(student: dict, epochs: int) -> dict:
    """A copy of a student config whose EncRL step trains ``epochs`` epochs (everything else as it is)."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise UserError(f"EncRL epochs must be a positive integer, got {epochs!r}")
    conf = copy.deepcopy(student)
    if not isinstance(conf.get("encrl"), dict):
        raise UserError("the student config has no encrl section to set the epochs of")
    conf["encrl"]["max_epoch"] = epochs
    return conf


def write_budget_configs(student_config: Path, epochs: Sequence[int], out_dir: Path) -> Dict[int, Path]:
    """Write ``<out_dir>/<config stem>_e<N>.yaml`` for each N of ``epochs``; ``{N: path}``."""
    if not student_config.is_file():
        raise UserError("no such student config", str(student_config), "see conf/student_r*_paper.yaml")
    student = load_yaml(student_config, "student config", allow_empty=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for n in dict.fromkeys(epochs):
        path = out_dir / f"{student_config.stem}_e{n}.yaml"
        header = f"# written by espnet_lw.bin.benchmark: {student_config} with {n} EncRL epochs (budget)\n"
        atomic_write_text(path, header + yaml.safe_dump(derive_encrl_epochs(student, n), sort_keys=False))
        paths[n] = path
    return paths
