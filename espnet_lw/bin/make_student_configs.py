"""Derive the ESPnet training configs of a student from the reference's own config.

A student config (``conf/student_r*.yaml``) only says what differs from the reference::

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
taken from the reference's ``config.yaml``, so a student always matches its reference. Keys
in a section other than ``model_conf`` / ``blocks`` override the reference's training keys
(``optim_conf``, ``max_epoch``, ``batch_bins`` ...).

    python -m espnet_lw.bin.make_student_configs --reference_config exp/asr_ref/config.yaml \\
        --reference_model exp/asr_ref/valid.loss.ave.pth --student_config conf/student_r67.yaml \\
        --mode encrl --out_dir exp/asr_student_r67_encrl/conf [--reference_cache DIR]

writes ``encrl.yaml`` + ``finetune.yaml`` (mode encrl), ``scratch.yaml`` (mode scratch) or
``finetune.yaml`` + ``blocks.txt`` (mode pruned).
"""

from __future__ import annotations

import argparse
import copy
import logging
from pathlib import Path
from typing import Dict, List

import yaml

from espnet_lw.utils.cli import UserError, run_main, setup_logging

#: reference training keys a student inherits (model shape, features, optimisation, batching)
INHERITED = (
    "frontend", "frontend_conf", "specaug", "specaug_conf", "preencoder", "preencoder_conf",
    "encoder", "encoder_conf", "postencoder", "postencoder_conf", "ctc_conf",
    "optim", "optim_conf", "scheduler", "scheduler_conf", "batch_type", "batch_bins",
    "batch_size", "valid_batch_bins", "accum_grad", "grad_clip", "num_workers", "patience",
    "keep_nbest_models", "log_interval", "seed", "use_tensorboard", "use_amp", "num_att_plot",
    "max_epoch",
)
SECTIONS = {"encrl", "finetune", "scratch", "pruned"}
TOP_KEYS = {"num_blocks", "reduction"} | SECTIONS
MODES = {"encrl": ("encrl", "finetune"), "scratch": ("scratch",), "pruned": ("pruned",)}


def load_yaml(path: Path, what: str) -> dict:
    if not path.is_file():
        raise UserError(f"no such {what}", str(path))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UserError(f"not valid YAML: {e}", str(path)) from e
    if not isinstance(data, dict):
        raise UserError(f"a {what} must be a YAML mapping", str(path))
    return data


def check_student(conf: dict, path: Path, ref_blocks: int, mode: str) -> None:
    unknown = set(conf) - TOP_KEYS
    if unknown:
        raise UserError(f"unknown keys {sorted(unknown)}; known: {sorted(TOP_KEYS)}", str(path))
    if ("num_blocks" in conf) == ("reduction" in conf):
        raise UserError("give exactly one of num_blocks and reduction", str(path))
    if "reduction" in conf:
        red = conf["reduction"]
        if not isinstance(red, (int, float)) or not 0 < red < 1:
            raise UserError(f"reduction must be a fraction between 0 and 1, got {red!r}", str(path))
        conf["num_blocks"] = student_blocks(ref_blocks, float(red))
        logging.info("%s: reduction %.3f of %d reference blocks -> %d blocks", path, red, ref_blocks, conf["num_blocks"])
    nb = conf.get("num_blocks")
    if not isinstance(nb, int) or not 1 <= nb <= ref_blocks:
        raise UserError(
            f"num_blocks must be an integer between 1 and the reference's {ref_blocks}, got {nb!r}", str(path)
        )
    for section in MODES[mode]:
        if not isinstance(conf.get(section, {}), dict):
            raise UserError(f"section '{section}' must be a mapping", str(path))
    for section in SECTIONS & set(conf):
        bad = set(conf[section] or {}) - set(INHERITED) - {"model_conf", "blocks", "best_model_criterion"}
        if bad:
            raise UserError(
                f"section '{section}': unknown keys {sorted(bad)}; allowed: model_conf, blocks and {', '.join(INHERITED)}",
                str(path),
            )


def student_blocks(ref_blocks: int, reduction: float) -> int:
    """Blocks left after removing ``reduction`` of ``ref_blocks`` (at least 1, fewer than all)."""
    n = int(round(ref_blocks * (1.0 - reduction)))
    if not 1 <= n < ref_blocks:
        raise UserError(
            f"removing {reduction:.1%} of the reference's {ref_blocks} blocks leaves {n}: "
            "a student needs at least one block and fewer than the reference"
        )
    return n


def base_config(ref: dict, num_blocks: int) -> dict:
    out = {k: copy.deepcopy(ref[k]) for k in INHERITED if k in ref}
    out["encoder_conf"] = dict(out.get("encoder_conf") or {}, num_blocks=num_blocks)
    # frontend_conf.fs and normalize are given by the stage driver, as for the reference
    if isinstance(out.get("frontend_conf"), dict):
        out["frontend_conf"].pop("fs", None)
    out["decoder"] = None
    out["best_model_criterion"] = [["valid", "loss", "min"]]
    return out


def section_config(base: dict, section: dict, model: str, model_conf: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (section or {}).items():
        if k in ("model_conf", "blocks"):
            continue
        out[k] = copy.deepcopy(v)
    out["model"] = model
    out["model_conf"] = model_conf
    return out


def make_configs(ref_config: Path, ref_model: Path, student: Path, mode: str, reference_cache: str | None):
    ref = load_yaml(ref_config, "reference config")
    conf = load_yaml(student, "student config")
    if ref.get("encoder") != "conformer":
        raise UserError(
            f"the reference encoder is '{ref.get('encoder')}', students are Conformer encoders with fewer blocks",
            str(ref_config),
        )
    ref_blocks = int((ref.get("encoder_conf") or {}).get("num_blocks", 0))
    check_student(conf, student, ref_blocks, mode)
    base = base_config(ref, conf["num_blocks"])
    out = {}
    if mode == "encrl":
        enc = conf.get("encrl") or {}
        mconf = dict(enc.get("model_conf") or {})
        mconf["reference_config"] = str(ref_config)
        mconf["reference_model"] = str(ref_model)
        if reference_cache:
            mconf["reference_cache"] = reference_cache
        out["encrl.yaml"] = section_config(base, enc, "lw_encrl", mconf)
        out["finetune.yaml"] = section_config(base, conf.get("finetune"), "lw_ctc", {})
    elif mode == "scratch":
        out["scratch.yaml"] = section_config(base, conf.get("scratch"), "lw_ctc", {})
    else:
        pruned = conf.get("pruned") or {}
        out["finetune.yaml"] = section_config(base, pruned, "lw_ctc", {})
        blocks = pruned.get("blocks", "first")
        out["blocks.txt"] = ",".join(map(str, blocks)) if isinstance(blocks, list) else str(blocks)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference_config", required=True, help="the reference exp's config.yaml")
    p.add_argument("--reference_model", required=True, help="the reference exp's model .pth")
    p.add_argument("--student_config", required=True, help="conf/student_r*.yaml")
    p.add_argument("--mode", choices=sorted(MODES), default="encrl")
    p.add_argument("--reference_cache", help="dir written by dump_reference_targets (mode encrl)")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--trained_dir", help="the student's exp dir: when a training in it has finished "
                   "(.done.stage11), configs in --out_dir that would change are refused, not overwritten")
    args = p.parse_args(argv)
    setup_logging()
    files = make_configs(
        Path(args.reference_config), Path(args.reference_model), Path(args.student_config), args.mode,
        args.reference_cache,
    )
    out = Path(args.out_dir)
    header = f"# written by espnet_lw.bin.make_student_configs from {args.student_config} and {args.reference_config}\n"
    texts = {name: content + "\n" if isinstance(content, str) else header + yaml.safe_dump(content, sort_keys=False)
             for name, content in files.items()}
    if args.trained_dir:
        check_unchanged(out, texts, Path(args.trained_dir), args.student_config)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (out / name).write_text(text, encoding="utf-8")
        logging.info("wrote %s", out / name)


def _body(text: str) -> List[str]:
    """The lines that configure something (comments such as the header are ignored)."""
    return [line for line in text.splitlines() if not line.lstrip().startswith("#")]


def check_unchanged(out: Path, texts: Dict[str, str], trained_dir: Path, student_config: str) -> None:
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


if __name__ == "__main__":
    run_main(main)
