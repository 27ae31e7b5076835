"""Prepare one adaptation: its ESPnet training config, its data, and the guard against redoing it.

An adaptation lives in its own exp dir (``<expdir>/adapt_<tag>``); the model it adapts is read,
never written. :func:`prepare` writes there

* ``conf/adapt.yaml`` - the checked adaptation config (:class:`~espnet_lw.adapt.config.AdaptConfig`);
* ``conf/train.yaml`` - ESPnet training config: the adapted model's own ``config.yaml`` (same
  model, features, normalisation statistics, tokens, optimiser) less its run-specific keys (data,
  shapes, output dir...), with the adaptation's epochs, learning rate and schedule, batches
  (``unsorted``, see :mod:`espnet_lw.adapt.replay`), ``init_param`` (the model file), ``freeze_param``
  and the noise options of ESPnet's default preprocessor;
* ``data/train``, ``data/valid`` - :func:`~espnet_lw.adapt.replay.build_adapt_data`;
* ``adapt.json`` - what was adapted with what (options, sizes) and the options fingerprint.

A second call with the same options reuses all of it (the training resumes); with other options it
is refused (:class:`~espnet_lw.utils.cli.UserError`), so a finished or half-done adaptation is never
silently mixed with new settings. :func:`write_reference_view` lays the adapted model out as a
reference exp dir for deriving students from it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from espnet_lw.adapt.config import AdaptConfig
from espnet_lw.adapt.replay import build_adapt_data
from espnet_lw.data.kaldi_dir import read_kv_lines
from espnet_lw.losses.config import LW_CTC_TRAINING_ONLY_KEYS
from espnet_lw.models.loading import load_state
from espnet_lw.utils.cli import UserError
from espnet_lw.utils.io import atomic_write_text, load_yaml, sha256_of, write_yaml

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]

#: keys of a trained model's config.yaml that belong to its own run, not to the model: never carried
RUN_KEYS = (
    "output_dir", "config", "print_config", "dry_run", "collect_stats", "write_collected_feats",
    "train_data_path_and_name_and_type", "valid_data_path_and_name_and_type", "train_shape_file",
    "valid_shape_file", "fold_length", "init_param", "pretrain_path", "ignore_init_mismatch", "freeze_param",
    "resume", "ngpu", "local_rank", "dist_backend", "dist_init_method", "dist_world_size", "dist_rank",
    "dist_master_addr", "dist_master_port", "dist_launcher", "multiprocessing_distributed",
    "batch_bins", "valid_batch_bins", "valid_batch_type", "valid_batch_size", "num_iters_per_epoch",
    "noise_scp", "noise_apply_prob", "noise_db_range", "rir_scp", "rir_apply_prob",
    "required", "version", "distributed",
)
META = "adapt.json"


def _config_keys() -> set:
    """Every option of the training task (a config key ESPnet would refuse is dropped)."""
    from espnet_lw.tasks.asr import LWASRTask  # noqa: PLC0415 - ESPnet is slow to import

    return set(vars(LWASRTask.get_parser().parse_args(["--token_list", "x", "--output_dir", "x"])))


def read_model(model_dir: PathLike, model_file: str) -> Dict[str, Any]:
    """The ``config.yaml`` of a trained model dir, checked to be an adaptable ASR model."""
    d = Path(model_dir)
    for f in ("config.yaml", model_file):
        if not (d / f).is_file():
            raise UserError(f"{f} not found: not a trained model dir", str(d),
                            "pass --adapt_model an exp dir that stage 11 trained (config.yaml + model file)")
    config = load_yaml(d / "config.yaml", "model config")
    if config.get("model") == "lw_encrl":
        raise UserError("this is an EncRL training step (model lw_encrl), not an ASR model", str(d),
                        "adapt the fine-tuned student dir (its parent), not its encrl/ sub-dir")
    return config


def check_freeze(prefixes: List[str], state_keys: List[str], where: str) -> None:
    """Every freeze prefix must name parameters of the model (as ESPnet's ``--freeze_param`` matches)."""
    for p in prefixes:
        if not any(k == p or k.startswith(p + ".") for k in state_keys):
            tops = sorted({".".join(k.split(".")[:2]) for k in state_keys})
            raise UserError(f"freeze: '{p}' names no parameter of the model; modules: {', '.join(tops)}", where,
                            "use a parameter-name prefix such as encoder.embed or encoder.encoders.0")
    if prefixes and all(any(k == p or k.startswith(p + ".") for p in prefixes) for k in state_keys):
        raise UserError("freeze: every parameter of the model would be frozen: nothing to adapt", where)


def check_noise_scp(path: PathLike) -> int:
    """A Kaldi-style ``id path`` noise list whose files exist; returns the number of entries."""
    p = Path(path)
    if not p.is_file():
        raise UserError("noise_scp not found", str(p),
                        "make it (the recipe's local/data.sh writes data/noise/wav.scp) or set noise_scp: null")
    n = 0
    for line in read_kv_lines(p):
        if not line.key:
            continue
        audio = line.value or line.key  # ESPnet also reads one-column lists (path only)
        if len(audio.split()) != 1 or audio.endswith("|"):
            raise UserError(f"line {line.lineno}: expected '<id> <audio file>', got {line.key} {line.value!r}",
                            str(p), "noise must be plain audio files (no pipes, no extra columns)")
        if not Path(audio).is_file():
            raise UserError(f"line {line.lineno}: audio file {audio} not found", str(p))
        n += 1
    if n == 0:
        raise UserError("noise_scp lists no audio", str(p))
    return n


def train_config(model_config: Dict[str, Any], cfg: AdaptConfig, init_file: str) -> Dict[str, Any]:
    """ESPnet training config of the adaptation (see the module docstring)."""
    keys = _config_keys()
    out = {k: copy.deepcopy(v) for k, v in model_config.items() if k in keys and k not in RUN_KEYS}
    if out.get("model_conf"):  # a KD student adapts with plain CTC: the field data has no cached reference posteriors
        out["model_conf"] = {k: v for k, v in out["model_conf"].items() if k not in LW_CTC_TRAINING_ONLY_KEYS}
    optim_conf = dict(out.get("optim_conf") or {})
    optim_conf["lr"] = cfg.lr
    out.update(
        max_epoch=cfg.epochs, optim_conf=optim_conf, batch_type="unsorted", batch_size=cfg.batch_size,
        keep_nbest_models=cfg.average, best_model_criterion=[["valid", "loss", "min"]],
        nbest_averaging_interval=0, patience=None, seed=cfg.seed, init_param=[init_file],
        freeze_param=list(cfg.freeze),
    )
    if cfg.warmup_steps:
        out.update(scheduler="warmuplr", scheduler_conf={"warmup_steps": cfg.warmup_steps})
    else:
        out.update(scheduler=None, scheduler_conf={})
    if cfg.noise_scp:
        out.update(use_preprocessor=True, noise_scp=cfg.noise_scp, noise_apply_prob=cfg.noise_apply_prob,
                   noise_db_range=cfg.noise_db_range_str)
    return out


def _dir_fingerprint(d: Optional[PathLike]) -> Optional[str]:
    if d is None:
        return None
    h = hashlib.sha256()
    for name in ("wav.scp", "text"):
        f = Path(d) / name
        h.update(name.encode() + (sha256_of(f).encode() if f.is_file() else b"-"))
    return h.hexdigest()[:16]


def options_of(cfg: AdaptConfig, model_dir: PathLike, model_file: str, adapt_dir: PathLike,
               replay_dir: Optional[PathLike], fs: int) -> Dict[str, Any]:
    """What decides an adaptation's result: compared on every re-run."""
    return {
        "config": cfg.as_dict(),
        "model_dir": os.path.normpath(str(model_dir)),
        "model_file": model_file,
        "model_sha256": sha256_of(Path(model_dir) / model_file),
        "adapt_data": os.path.normpath(str(adapt_dir)),
        "adapt_data_hash": _dir_fingerprint(adapt_dir),
        "replay_data": os.path.normpath(str(replay_dir)) if replay_dir and cfg.replay > 0 else None,
        "replay_data_hash": _dir_fingerprint(replay_dir) if cfg.replay > 0 else None,
        "noise_scp_hash": sha256_of(cfg.noise_scp)[:16] if cfg.noise_scp and Path(cfg.noise_scp).is_file() else None,
        "fs": fs,
    }


def _differences(old: Dict[str, Any], new: Dict[str, Any]) -> List[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        if k == "config":
            a, b = old.get(k) or {}, new.get(k) or {}
            out += [f"{c}: {a.get(c)!r} -> {b.get(c)!r}" for c in sorted(set(a) | set(b)) if a.get(c) != b.get(c)]
        elif old.get(k) != new.get(k):
            out.append(f"{k}: {old.get(k)!r} -> {new.get(k)!r}")
    return out


def check_existing(out_dir: PathLike, options: Dict[str, Any], finished: bool) -> bool:
    """True when ``out_dir`` was prepared with ``options`` already; a UserError when with other ones."""
    meta = Path(out_dir) / META
    if not meta.is_file():
        if finished:
            raise UserError(f"finished adaptation without {META}", str(out_dir),
                            "pass --overwrite true to redo it (the old dir is kept aside)")
        return False
    old = json.loads(meta.read_text(encoding="utf-8")).get("options", {})
    diff = _differences(old, options)
    if diff:
        state = "a finished adaptation" if finished else "an unfinished adaptation"
        raise UserError(f"{state} with other options ({'; '.join(diff[:6])})", str(out_dir),
                        "pass --overwrite true to redo it (the old dir is kept as *.old.<time>), "
                        "or choose another --adapt_tag")
    return True


def prepare(
    *,
    model_dir: PathLike,
    model_file: str,
    config_file: PathLike,
    adapt_data: PathLike,
    out_dir: PathLike,
    fs: int,
    replay_data: Optional[PathLike] = None,
    token_suffix: str = "char",
    check_only: bool = False,
) -> str:
    """Prepare (or check) the adaptation in ``out_dir``; returns ``prepared``, ``reused`` or ``checked``."""
    out = Path(out_dir)
    cfg = AdaptConfig.load(config_file)
    model_config = read_model(model_dir, model_file)
    options = options_of(cfg, model_dir, model_file, adapt_data, replay_data, fs)
    if check_only:
        check_existing(out, options, finished=True)
        return "checked"
    if check_existing(out, options, finished=False) and (out / "conf" / "train.yaml").is_file():
        logger.info("%s: prepared with the same options already: reused (the training resumes)", out)
        return "reused"
    state_keys = list(load_state(Path(model_dir) / model_file))
    check_freeze(cfg.freeze, state_keys, str(config_file))
    if cfg.noise_scp:
        n = check_noise_scp(cfg.noise_scp)
        logger.info("noise augmentation: %d noise file(s) from %s, p=%g, SNR %s dB", n, cfg.noise_scp,
                    cfg.noise_apply_prob, cfg.noise_db_range_str)
    if cfg.replay > 0 and replay_data is None:
        raise UserError("replay > 0 needs the original training data", str(config_file))
    summary = build_adapt_data(
        adapt_data, out / "data", fs=fs, batch_size=cfg.batch_size, replay=cfg.replay, replay_dir=replay_data,
        valid_share=cfg.valid_share, minutes=cfg.minutes, seed=cfg.seed,
        count_tokens=_token_counter(model_config), token_suffix=token_suffix,
    )
    write_yaml(out / "conf" / "adapt.yaml", cfg.as_dict())
    write_yaml(out / "conf" / "train.yaml", train_config(model_config, cfg, str(Path(model_dir) / model_file)))
    meta = {"options": options, "data": summary.as_dict()}
    atomic_write_text(out / META, json.dumps(meta, indent=2) + "\n")
    logger.info("%s: %d field utterances (%.1f min), %d held out, %d replayed (%.0f %% of every batch), "
                "%d batches of %d", out, summary.field_utts, summary.field_seconds / 60, summary.valid_utts,
                summary.replay_utts, 100 * summary.min_batch_replay_share, summary.batches, summary.batch_size)
    return "prepared"


def _token_counter(model_config: Dict[str, Any]):
    """Tokens per transcript as the model's tokenizer counts them (the text shape file)."""
    from espnet2.text.build_tokenizer import build_tokenizer  # noqa: PLC0415

    token_type = model_config.get("token_type") or "char"
    bpemodel = model_config.get("bpemodel")
    if token_type == "bpe" and not (bpemodel and Path(bpemodel).is_file()):
        return lambda text: len(text.split()) * 2  # shape only orders keys for the unsorted sampler
    tokenizer = build_tokenizer(token_type=token_type, bpemodel=bpemodel)
    return lambda text: len(tokenizer.text2tokens(text))


def write_reference_view(adapt_dir: PathLike, model_dir: PathLike, model_file: str) -> Path:
    """``<adapt_dir>/reference``: the adapted weights under the original model's ``config.yaml``.

    Stage 11 reads a reference's training recipe (optimiser, schedule, batches) from its
    ``config.yaml``; the adaptation's own config has the adaptation's (few epochs, a low learning
    rate). This view gives students derived from the adapted model (``--ref_exp
    <adapt_dir>/reference``) the original's recipe and the adapted weights.
    """
    view = Path(adapt_dir) / "reference"
    view.mkdir(parents=True, exist_ok=True)
    atomic_write_text(view / "config.yaml", (Path(model_dir) / "config.yaml").read_text(encoding="utf-8"))
    link = view / model_file
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(os.path.join("..", model_file), link)
    return view
