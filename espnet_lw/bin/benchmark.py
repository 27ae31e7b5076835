"""The students benchmark: reference, scratch / pruned / EncRL students, loss ablations, WER vs time.

Three subcommands, each with ``--help``; run them from a recipe dir (``--recipe_dir``)::

    # everything: train (skipping what is trained), decode every epoch, write the report
    python -m espnet_lw.bin.benchmark run --recipe_dir . [--ratios "50 67 83"] [--ablation_ratio 67] \\
        [--test_sets "dev test field"] [--epoch_test_sets test] [--student_args="--max_epoch 2"] \\
        [-- <more run.sh options, e.g. --nbpe 48>]
    # CTC-greedy decoding + sclite of every kept <N>epoch.pth (cached: re-running redoes nothing)
    python -m espnet_lw.bin.benchmark epochs --recipe_dir . [--epoch_test_sets test]
    # benchmark.json, the RESULTS.md section and the plot, from the exp dirs as they are
    python -m espnet_lw.bin.benchmark report --recipe_dir .

``local/benchmark.sh`` in a recipe is a thin wrapper of ``run``.

What ``run`` trains (each step is ``./run.sh``, so finished stages are skipped):

1. the reference: stages 1-13;
2. for each ratio NN: stages 11-13 with ``--student_config conf/student_rNN.yaml`` and
   ``--student_mode`` scratch, pruned and encrl (tags ``student_rNN_<mode>``);
3. at ``--ablation_ratio``: EncRL with one alignment term only (``student_rNN_encrl_mse``,
   ``student_rNN_encrl_clip``), from configs derived from the shipped one, written to
   ``<expdir>/benchmark/conf/``.

Per-epoch checkpoints
---------------------
ESPnet deletes every ``<N>epoch.pth`` that is not among the ``keep_nbest_models`` best (the
latest is kept). Raising ``--keep_nbest_models`` is not a fix: ESPnet averages that many
models into ``valid.loss.ave.pth``, so it would change the final model. Instead, while ``run``
trains, a keeper thread hard-links every new ``<N>epoch.pth`` of ``<expdir>/asr_*/`` into
``<expdir>/benchmark/ckpt/asr_*/`` (a copy where hard links fail), so the file survives
ESPnet's clean-up. Models trained before (or outside) ``run`` have only the epochs ESPnet
kept: their curves have gaps (``null`` in ``wer_per_epoch``).

Wall time
---------
Per epoch: ESPnet's ``<N>epoch results: [train] ... time=... [valid] ... time=...`` lines of
each ``train.log`` (train + validation). The x axis of the plot is *student training wall
time*: an EncRL student's curve starts after its EncRL epochs and the reference-target cache
(``dump_reference_targets``, timed in ``stage_times.tsv``), which is counted in full for every
EncRL student (conservative; ``speedup_to_target_amortised`` shares it among the EncRL
students). The reference's own training is not counted: it is the model being compressed.

Speed-up (key: the ratio of removed blocks, e.g. ``"0.667"``)
-------------------------------------------------------------
target = the WER (first ``--epoch_test_sets`` set) of the scratch student at its last epoch;
``t_scratch`` = the scratch student's summed epoch times; ``e`` = the first fine-tune epoch of
the EncRL student (loss clip+mse) whose WER is <= target, ``t_ft(e)`` its summed fine-tune
epoch times up to ``e``:

* ``speedup_to_target_finetune_only`` = t_scratch / t_ft(e)  (the paper's count);
* ``speedup_to_target`` = t_scratch / (t_encrl + t_cache + t_ft(e))  (what a user pays);
* ``speedup_to_target_amortised`` = t_scratch / (t_encrl + t_cache / n_encrl + t_ft(e));

``null`` when the EncRL student never reaches the target (or a curve is missing).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import logging
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import yaml

from espnet_lw.utils.cli import UserError, run_main, setup_logging

BEGIN_MARK = "<!-- benchmark:begin -->"
END_MARK = "<!-- benchmark:end -->"
KINDS = ("reference", "scratch", "pruned", "encrl")
#: the decode dir whose sclite results are the "final" WER (stage 12's default tag)
DEFAULT_DECODE = "decode_ctc_greedy_asr_model_valid.loss.ave"
#: alignment terms in the order used in loss names ("clip+mse")
TERM_ORDER = ("clip", "mse")
#: run.sh options the benchmark sets itself
RESERVED = {"--stage", "--stop_stage", "--test_sets", "--student_config", "--student_mode", "--student_tag",
            "--student_args", "--expdir", "--dumpdir"}


# ---------------------------------------------------------------------------------- train.log times
_UNITS = {
    "nanosecond": 1e-9, "microsecond": 1e-6, "millisecond": 1e-3, "second": 1.0, "minute": 60.0,
    "hour": 3600.0, "day": 86400.0, "week": 604800.0, "year": 31536000.0,
}
_SPAN_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(nanosecond|microsecond|millisecond|second|minute|hour|day|week|year)s?\b")
_EPOCH_LINE = re.compile(r"\b(\d+)epoch results: (.*)$")
# "time=" not preceded by a word character (so not "train_time=" / "iter_time="), up to the next ", key=" / "["
_TIME_FIELD = re.compile(r"(?<![\w.])time=(.*?)(?=, [A-Za-z_][\w]*=|,? \[|,?\s*$)")


def parse_timespan(text: str) -> float:
    """Seconds of a humanfriendly timespan as ESPnet's reporter prints it.

    ``"5 minutes and 30.52 seconds"`` -> 330.52; ``"1 hour, 2 minutes and 3 seconds"`` -> 3723;
    a plain number is taken as seconds. Raises ``ValueError`` when nothing parses.
    """
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _SPAN_PART.findall(text)
    if not parts:
        raise ValueError(f"not a timespan: {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


@dataclass(frozen=True)
class EpochTime:
    """Wall time of one epoch: training and validation, in seconds."""

    train: float
    valid: float

    @property
    def total(self) -> float:
        return self.train + self.valid


def parse_epoch_times(log: Path | str) -> Dict[int, EpochTime]:
    """``{epoch: EpochTime}`` from the ``<N>epoch results:`` lines of an ESPnet ``train.log``.

    A log that was appended to by a resumed run may report an epoch twice: the last line wins.
    A missing file gives ``{}``.
    """
    log = Path(log)
    out: Dict[int, EpochTime] = {}
    if not log.is_file():
        return out
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _EPOCH_LINE.search(line)
        if not m:
            continue
        body = m.group(2)
        train_part, _, valid_part = body.partition("[valid]")
        secs = []
        for part in (train_part, valid_part):
            t = _TIME_FIELD.search(part)
            secs.append(parse_timespan(t.group(1)) if t else 0.0)
        if _TIME_FIELD.search(train_part) is None:
            logging.warning("%s: epoch %s has no train time: %s", log, m.group(1), line[:200])
        out[int(m.group(1))] = EpochTime(secs[0], secs[1])
    return dict(sorted(out.items()))


def seconds_list(times: Dict[int, EpochTime]) -> List[float]:
    """Seconds per epoch 1..max (an epoch missing from the log counts 0)."""
    if not times:
        return []
    return [round(times[e].total, 3) if e in times else 0.0 for e in range(1, max(times) + 1)]


# ---------------------------------------------------------------------------------- speed-up
def time_to_reach(wers: Sequence[Optional[float]], seconds: Sequence[float], target: float,
                  offset: float = 0.0) -> Tuple[Optional[int], Optional[float]]:
    """First epoch (1-based) whose WER is <= ``target`` and the wall time then (``offset`` + the
    summed epoch times up to it); ``(None, None)`` if never reached. ``None`` WERs are skipped."""
    cum = float(offset)
    for i, (w, s) in enumerate(zip(wers, seconds), 1):
        cum += float(s)
        if w is not None and w <= target + 1e-9:
            return i, cum
    return None, None


def speedup(baseline_seconds: Optional[float], seconds: Optional[float]) -> Optional[float]:
    """``baseline_seconds / seconds`` rounded to 3 decimals; ``None`` when either is missing."""
    if baseline_seconds is None or seconds is None or seconds <= 0:
        return None
    return round(baseline_seconds / seconds, 3)


def compute_speedups(scratch: dict, encrl: dict, cache_seconds: float, n_encrl: int, speed_set: str) -> dict:
    """The three speed-ups of one ratio (see the module doc) and what they were computed from.

    ``scratch`` / ``encrl`` are system dicts of benchmark.json.
    """
    s_wers = (scratch.get("wer_per_epoch") or {}).get(speed_set) or []
    e_wers = (encrl.get("wer_per_epoch") or {}).get(speed_set) or []
    t_scratch = round(sum(scratch.get("seconds_per_epoch") or []), 3)
    t_encrl = float(encrl.get("encrl_seconds") or 0.0)
    target = s_wers[-1] if s_wers else None
    details = {
        "scratch_system": scratch["name"], "encrl_system": encrl["name"], "test_set": speed_set,
        "target_wer": target, "scratch_seconds": t_scratch, "encrl_seconds": t_encrl,
        "reference_cache_seconds": cache_seconds, "n_encrl_students": n_encrl,
        "reached_epoch": None, "finetune_seconds_to_target": None,
    }
    out = {"full": None, "finetune_only": None, "amortised": None, "details": details}
    if target is None or not e_wers:
        return out
    epoch, t_ft = time_to_reach(e_wers, encrl.get("seconds_per_epoch") or [], target)
    if epoch is None:
        return out
    details.update(reached_epoch=epoch, finetune_seconds_to_target=round(t_ft, 3))
    out["finetune_only"] = speedup(t_scratch, t_ft)
    out["full"] = speedup(t_scratch, t_encrl + cache_seconds + t_ft)
    out["amortised"] = speedup(t_scratch, t_encrl + cache_seconds / max(n_encrl, 1) + t_ft)
    return out


def ratio_key(ratio: float) -> str:
    """``0.6666`` -> ``"0.667"``, ``0.5`` -> ``"0.5"``."""
    return f"{round(ratio, 3):g}"


# ---------------------------------------------------------------------------------- ablation configs
def loss_name(alignment: Optional[dict]) -> str:
    """``{"clip": {...}, "mse": {...}}`` -> ``"clip+mse"`` (terms with weight > 0; known terms first)."""
    alignment = alignment if alignment is not None else {"clip": {}, "mse": {}}  # the model's default
    active = [k for k, v in alignment.items() if float((v or {}).get("weight", 1.0)) > 0]
    order = [t for t in TERM_ORDER if t in active] + sorted(t for t in active if t not in TERM_ORDER)
    return "+".join(order)


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
    """Write ``<out_dir>/<stem>_encrl_<term>.yaml`` for each alignment term; ``{term: path}``."""
    if not student_config.is_file():
        raise UserError("no such student config", str(student_config), "see conf/student_r*.yaml")
    student = yaml.safe_load(student_config.read_text(encoding="utf-8")) or {}
    align = ((student.get("encrl") or {}).get("model_conf") or {}).get("alignment") or {}
    if len(align) < 2:
        raise UserError(f"an ablation needs at least two alignment terms, found {sorted(align)}", str(student_config))
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for term in [t for t in TERM_ORDER if t in align] + sorted(t for t in align if t not in TERM_ORDER):
        path = out_dir / f"{stem}_encrl_{term}.yaml"
        header = (f"# written by espnet_lw.bin.benchmark: {student_config} with only the '{term}' "
                  "alignment term (loss ablation)\n")
        path.write_text(header + yaml.safe_dump(derive_ablation(student, term), sort_keys=False), encoding="utf-8")
        paths[term] = path
    return paths


# ---------------------------------------------------------------------------------- exp tree
def _yaml(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"cannot read YAML: {e}", str(path)) from e


def _num_blocks(conf: dict) -> Optional[int]:
    nb = (conf.get("encoder_conf") or {}).get("num_blocks")
    return int(nb) if nb is not None else None


def read_params(exp: Path) -> Optional[int]:
    path = exp / "params.txt"
    if not path.is_file():
        return None
    first = (path.read_text(encoding="utf-8").split() or [""])[0]
    return int(first) if first.isdigit() else None


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


def system_kind(exp: Path, conf: dict) -> Optional[str]:
    """reference | scratch | pruned | encrl, from the model name and the student's conf/ dir."""
    model = conf.get("model")
    if model == "lw_encrl":
        return None  # an EncRL stage, not a CTC model
    if model != "lw_ctc":
        return "reference"
    if (exp / "encrl" / "config.yaml").is_file() or (exp / "conf" / "encrl.yaml").is_file():
        return "encrl"
    if (exp / "conf" / "blocks.txt").is_file():
        return "pruned"
    if (exp / "conf" / "scratch.yaml").is_file():
        return "scratch"
    return None


def discover_systems(expdir: Path, ref_exp: Optional[Path] = None) -> List[SystemDir]:
    """Every trained CTC model of ``expdir/asr_*`` (dirs moved aside as ``*.old.*`` skipped)."""
    systems: List[SystemDir] = []
    for exp in sorted(expdir.glob("asr_*")):
        if not exp.is_dir() or ".old." in exp.name or exp.name.startswith("asr_stats"):
            continue
        cfg = exp / "config.yaml"
        if not cfg.is_file():
            continue
        conf = _yaml(cfg)
        kind = system_kind(exp, conf)
        if kind is None:
            logging.warning("%s: not a reference or a student exp dir: left out", exp)
            continue
        name = exp.name[len("asr_"):]
        s = SystemDir(name=name, kind=kind, exp=exp, conf=conf)
        if kind == "encrl":
            enc_cfg = exp / "encrl" / "config.yaml"
            enc_conf = _yaml(enc_cfg if enc_cfg.is_file() else exp / "conf" / "encrl.yaml")
            s.loss = loss_name((enc_conf.get("model_conf") or {}).get("alignment"))
            s.extra["reference_config"] = (enc_conf.get("model_conf") or {}).get("reference_config")
        systems.append(s)
    primary = primary_reference(systems, ref_exp)
    ref_blocks = _num_blocks(primary.conf) if primary else None
    for s in systems:
        nb = _num_blocks(s.conf)
        if s.kind == "reference":
            s.ratio = 0.0
        elif ref_blocks and nb:
            s.ratio = round(1.0 - nb / ref_blocks, 3)
    order = {k: i for i, k in enumerate(KINDS)}
    systems.sort(key=lambda s: (-1 if s.ratio is None else s.ratio, order[s.kind], s.loss != "clip+mse", s.loss or "", s.name))
    return systems


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


def final_wers(exp: Path, test_sets: Sequence[str], decode: Optional[str]) -> Dict[str, Optional[float]]:
    """sclite WER (%) of ``exp/<decode dir>/<set>/score_wer/result.txt`` per test set."""
    from espnet_lw.scoring import parse_result

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
        for info in sorted(ref.exp.glob("targets/*/info.yaml")):
            secs = ((_yaml(info).get("this_run") or {}).get("wall_seconds"))
            if secs:
                return float(secs)
    return 0.0


# ---------------------------------------------------------------------------------- per-epoch cache
def epoch_cache_path(expdir: Path, name: str) -> Path:
    return expdir / "benchmark" / "epochs" / f"{name}.json"


def load_epoch_cache(expdir: Path, name: str) -> dict:
    path = epoch_cache_path(expdir, name)
    if path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            logging.warning("%s: unreadable cache, starting again", path)
    return {"system": name, "sets": {}}


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def wer_per_epoch(cache: dict, dset: str, epochs: int) -> List[Optional[float]]:
    entries = (cache.get("sets") or {}).get(dset) or {}
    return [(entries.get(str(e)) or {}).get("wer") for e in range(1, epochs + 1)]


_EPOCH_FILE = re.compile(r"^(\d+)epoch\.pth$")


def epoch_checkpoints(expdir: Path, exp: Path) -> Dict[int, Path]:
    """``{epoch: path}`` of the ``<N>epoch.pth`` in ``exp`` and those kept under ``benchmark/ckpt``."""
    out: Dict[int, Path] = {}
    for d in (expdir / "benchmark" / "ckpt" / exp.name, exp):  # the exp dir's own file wins
        if d.is_dir():
            for p in d.iterdir():
                m = _EPOCH_FILE.match(p.name)
                if m and p.is_file():
                    out[int(m.group(1))] = p
    return dict(sorted(out.items()))


def ckpt_id(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def keep_checkpoints(expdir: Path) -> int:
    """Hard-link every ``asr_*/<N>epoch.pth`` into ``benchmark/ckpt/asr_*/`` (copy if linking fails);
    returns how many were newly kept."""
    n = 0
    for src in expdir.glob("asr_*/*epoch.pth"):
        if not _EPOCH_FILE.match(src.name) or ".old." in src.parent.name:
            continue
        dst = expdir / "benchmark" / "ckpt" / src.parent.name / src.name
        try:
            if dst.exists() and (os.path.samefile(src, dst) or ckpt_id(src) == ckpt_id(dst)):
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(dst.name + ".tmp")
            tmp.unlink(missing_ok=True)
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copy2(src, tmp)
            os.replace(tmp, dst)
            n += 1
        except FileNotFoundError:
            continue  # ESPnet removed it meanwhile
    return n


class CheckpointKeeper:
    """A thread that calls :func:`keep_checkpoints` every ``interval`` seconds while training runs."""

    def __init__(self, expdir: Path, interval: float = 5.0):
        self.expdir, self.interval = expdir, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                keep_checkpoints(self.expdir)
            except OSError as e:  # keep going: a missed epoch is a gap in a curve, not a failure
                logging.warning("checkpoint keeper: %s", e)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        keep_checkpoints(self.expdir)


# ---------------------------------------------------------------------------------- epochs decoding
def read_audio(dumpdir: Path, dset: str) -> List[Tuple[str, object]]:
    """``[(uttid, 1-D float tensor)]`` of ``<dumpdir>/raw/<dset>/wav.scp``, shortest first."""
    import soundfile as sf
    import torch

    from espnet_lw.bin.asr_inference import read_scp

    items = []
    for uttid, path in read_scp(dumpdir / "raw" / dset / "wav.scp"):
        try:
            wav, _ = sf.read(path, dtype="float32", always_2d=False)
        except Exception as e:  # noqa: BLE001
            raise UserError(f"cannot read audio of utterance {uttid}: {e}", path) from e
        if wav.ndim > 1:
            wav = wav[:, 0]
        items.append((uttid, torch.from_numpy(wav)))
    items.sort(key=lambda kv: (len(kv[1]), kv[0]))
    return items


def decode_epochs(expdir: Path, dumpdir: Path, systems: Sequence[SystemDir], sets: Sequence[str],
                  batch_size: int = 8) -> None:
    """CTC greedy decoding + sclite of every epoch checkpoint not in the cache yet.

    ESPnet is loaded once; each system's model is built once from its config and the first
    checkpoint, then every epoch's state dict is loaded into it (strictly: a missing or extra key
    is an error). Results go to ``<expdir>/benchmark/epochs/<system>.json`` (after every epoch)
    and the hypotheses / sclite reports to ``<expdir>/benchmark/epochs/<system>/<set>/<N>epoch/``.
    """
    from types import SimpleNamespace

    import torch

    from espnet_lw.bin.asr_inference import build_speech2text, decode_batch, ids_to_text
    from espnet_lw.scoring import score

    audio: Dict[str, list] = {}
    opts = {"decoding": "greedy", "batch_size": batch_size, "beam_size": 1}
    for s in systems:
        ckpts = epoch_checkpoints(expdir, s.exp)
        cache = load_epoch_cache(expdir, s.name)
        todo = []
        for dset in sets:
            entries = cache.setdefault("sets", {}).setdefault(dset, {})
            for e, p in ckpts.items():
                if (entries.get(str(e)) or {}).get("ckpt") != ckpt_id(p):
                    todo.append((dset, e, p))
        if not todo:
            logging.info("%s: every kept epoch is decoded already (%d epochs)", s.name, len(ckpts))
            continue
        logging.info("%s: decoding %d epoch checkpoint(s) x set(s)", s.name, len(todo))
        first = todo[0][2]
        s2t = build_speech2text(SimpleNamespace(asr_train_config=str(s.exp / "config.yaml"),
                                                asr_model_file=str(first)), opts, "cpu")
        loaded = None
        for dset, e, p in todo:
            if dset not in audio:
                audio[dset] = read_audio(dumpdir, dset)
            if loaded != p:
                state = torch.load(p, map_location="cpu")
                try:
                    s2t.asr_model.load_state_dict(state, strict=True)
                except RuntimeError as err:
                    raise UserError(f"checkpoint does not fit the model of {s.exp}/config.yaml: {err}", str(p))
                s2t.asr_model.eval()
                loaded = p
            out = expdir / "benchmark" / "epochs" / s.name / dset / f"{e}epoch"
            out.mkdir(parents=True, exist_ok=True)
            lines = []
            items = audio[dset]
            for start in range(0, len(items), batch_size):
                chunk = items[start:start + batch_size]
                for (uttid, _), ids in zip(chunk, decode_batch(s2t, [w for _, w in chunk], opts)):
                    lines.append(f"{uttid} {ids_to_text(s2t, ids)[0]}".rstrip())
            (out / "text").write_text("\n".join(sorted(lines)) + "\n", encoding="utf-8")
            data = dumpdir / "raw" / dset
            utt2spk = data / "utt2spk"
            res = score(data / "text", out / "text", out, utt2spk if utt2spk.is_file() else None,
                        score_types=("wer",), detail=False)["wer"]
            cache["sets"][dset][str(e)] = {"wer": res.err, "ckpt": ckpt_id(p), "checkpoint": str(p)}
            _atomic_write(epoch_cache_path(expdir, s.name), json.dumps(cache, indent=1, sort_keys=True))
            logging.info("%s epoch %d %s: WER %.2f%%", s.name, e, dset, res.err)


# ---------------------------------------------------------------------------------- report
def environment() -> dict:
    from espnet_lw.bin.make_results import _espnet_lw_version, _run, _version, cpu_description, gpu_description

    here = Path(__file__).resolve().parent
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "espnet": _version("espnet"),
        "espnet_lw": _espnet_lw_version(),
        "git_commit": _run(["git", "rev-parse", "HEAD"], cwd=here),
        "git_dirty": bool(_run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here)),
        "cpu": cpu_description(),
        "gpu": gpu_description(),
    }


def build_benchmark(expdir: Path, test_sets: Sequence[str], epoch_sets: Sequence[str], command: Optional[str],
                    decode: Optional[str] = None, ref_exp: Optional[Path] = None,
                    env: Optional[dict] = None) -> dict:
    """benchmark.json's content from the exp tree (no training, no decoding)."""
    dirs = discover_systems(expdir, ref_exp)
    if not dirs:
        raise UserError("no trained reference or student under the expdir", str(expdir),
                        "run local/benchmark.sh (or ./run.sh) first")
    primary = primary_reference(dirs, ref_exp)
    cache_secs = round(reference_cache_seconds(expdir, primary), 3)
    systems = []
    for s in dirs:
        times = seconds_list(parse_epoch_times(s.exp / "train.log"))
        encrl_secs = encrl_epochs = None
        if s.kind == "encrl":
            encrl_times = seconds_list(parse_epoch_times(s.exp / "encrl" / "train.log"))
            encrl_secs, encrl_epochs = round(sum(encrl_times), 3), len(encrl_times)
        cache = load_epoch_cache(expdir, s.name)
        train = sum(times) + ((encrl_secs or 0.0) + cache_secs if s.kind == "encrl" else 0.0)
        systems.append({
            "name": s.name, "kind": s.kind, "ratio": s.ratio, "loss": s.loss, "params": read_params(s.exp),
            "epochs": len(times), "train_seconds": round(train, 3),
            "wer": final_wers(s.exp, test_sets, decode),
            "wer_per_epoch": {d: wer_per_epoch(cache, d, len(times)) for d in epoch_sets},
            "seconds_per_epoch": times, "encrl_seconds": encrl_secs, "encrl_epochs": encrl_epochs,
        })
    speed_set = epoch_sets[0] if epoch_sets else None
    n_encrl = sum(1 for s in systems if s["kind"] == "encrl")
    full, ft_only, amort, details = {}, {}, {}, {}
    for ratio in sorted({s["ratio"] for s in systems if s["kind"] == "encrl" and s["ratio"] is not None}):
        scratch = _main_system(systems, "scratch", ratio)
        encrl = _main_system(systems, "encrl", ratio)
        if scratch is None or encrl is None or speed_set is None:
            continue
        r = compute_speedups(scratch, encrl, cache_secs, n_encrl, speed_set)
        key = ratio_key(ratio)
        full[key], ft_only[key], amort[key], details[key] = r["full"], r["finetune_only"], r["amortised"], r["details"]
    return {
        "systems": systems,
        "speedup_to_target": full,
        "speedup_to_target_finetune_only": ft_only,
        "speedup_to_target_amortised": amort,
        "speedup_details": details,
        "reference_cache_seconds": cache_secs,
        "epoch_test_sets": list(epoch_sets),
        "definitions": {
            "ratio": "fraction of the reference's encoder blocks removed",
            "train_seconds": "sum of train+valid epoch times of the CTC model; for encrl also the EncRL epochs "
                             "and the reference-target cache (counted in full)",
            "speedup_to_target": "scratch seconds / (EncRL + reference-target cache + fine-tune seconds until the "
                                 "EncRL student's WER <= the scratch student's last-epoch WER)",
            "speedup_to_target_finetune_only": "scratch seconds / fine-tune seconds until that WER (paper's count)",
            "speedup_to_target_amortised": "as speedup_to_target, the cache shared among the EncRL students",
        },
        "command": command,
        "environment": env if env is not None else environment(),
    }


def _main_system(systems: List[dict], kind: str, ratio: float) -> Optional[dict]:
    """The system of ``kind`` at ``ratio`` the speed-up uses: for encrl the clip+mse one; shortest name."""
    if ratio is None:
        return None
    cands = [s for s in systems if s["kind"] == kind and s["ratio"] is not None and abs(s["ratio"] - ratio) < 1e-6]
    if kind == "encrl":
        cands = [s for s in cands if s["loss"] == "clip+mse"] or cands
    return min(cands, key=lambda s: (len(s["name"]), s["name"])) if cands else None


def _fmt_wer(w: Optional[float]) -> str:
    return "-" if w is None else f"{w:.1f}"


def _fmt_ratio(r: Optional[float]) -> str:
    return "?" if r is None else f"{r:g}"


def _fmt_speed(x: Optional[float]) -> str:
    return "not reached" if x is None else f"{x:.2f}x"


def render_markdown(bench: dict, test_sets: Sequence[str], plot_name: Optional[str]) -> str:
    """The RESULTS.md section between the benchmark markers."""
    from espnet_lw.bin.make_results import human_duration

    systems = bench["systems"]
    lines = [BEGIN_MARK, "## Benchmark: light-weight students", "",
             "Written by `python -m espnet_lw.bin.benchmark` (numbers also in `benchmark.json`). "
             "WER: sclite, CTC greedy, final model (`valid.loss.ave.pth`). Epochs: EncRL + fine-tune for "
             "EncRL students (`epochs` in the json counts the CTC epochs, `encrl_epochs` the others). "
             "Train time: summed train+valid "
             "epoch times from `train.log`; for EncRL students EncRL + reference-target cache + fine-tune "
             "(fine-tune alone in brackets). Rel. impr.: (WER scratch - WER) / WER scratch at the same ratio.",
             "", "```sh", bench.get("command") or "(command not recorded)", "```", ""]
    head = ["system", "kind", "ratio", "loss", "params", "epochs", "train time"]
    head += [f"WER {d}" for d in test_sets] + ["rel. WER impr. vs scratch"]
    lines += ["|" + "|".join(head) + "|", "|" + "---|" * len(head)]
    for s in systems:
        t = human_duration(s["train_seconds"])
        if s["kind"] == "encrl":
            t += f" (ft {human_duration(sum(s['seconds_per_epoch']))})"
        params = "-" if s["params"] is None else f"{s['params'] / 1e6:.2f} M"
        impr = "-"
        if s["kind"] in ("encrl", "pruned"):
            scratch = _main_system(systems, "scratch", s["ratio"])
            if scratch is not None:
                cells = []
                for d in test_sets:
                    a, b = scratch["wer"].get(d), s["wer"].get(d)
                    if a is not None and b is not None and a > 0:
                        cells.append(f"{d} {100 * (a - b) / a:+.1f}%")
                impr = ", ".join(cells) or "-"
        epochs = str(s["epochs"]) if not s.get("encrl_epochs") else f"{s['encrl_epochs']} + {s['epochs']}"
        row = [s["name"], s["kind"], _fmt_ratio(s["ratio"]), s["loss"] or "-", params, epochs, t]
        row += [_fmt_wer(s["wer"].get(d)) for d in test_sets] + [impr]
        lines.append("|" + "|".join(row) + "|")
    lines += ["", f"Speed-up to reach the scratch student's last-epoch WER on "
                  f"`{(bench.get('epoch_test_sets') or ['?'])[0]}` (scratch wall time / EncRL student's):", ""]
    if not bench["speedup_to_target"]:
        lines.append("- not available (needs a scratch and an EncRL student at the same ratio, with per-epoch WERs)")
    for key, det in bench["speedup_details"].items():
        ep = det["reached_epoch"]
        lines.append(
            f"- ratio {key} (`{det['encrl_system']}` vs `{det['scratch_system']}`, target WER "
            f"{_fmt_wer(det['target_wer'])}%{'' if ep is None else f', reached at fine-tune epoch {ep}'}): "
            f"fine-tune only {_fmt_speed(bench['speedup_to_target_finetune_only'][key])} (the paper's count); "
            f"whole student cost {_fmt_speed(bench['speedup_to_target'][key])} "
            f"(EncRL + reference targets counted in full); "
            f"{_fmt_speed(bench['speedup_to_target_amortised'][key])} with the reference targets "
            f"({human_duration(det['reference_cache_seconds'])}) shared by {det['n_encrl_students']} EncRL students")
    if plot_name:
        lines += ["", f"![WER vs student training wall time]({plot_name})"]
    lines.append(END_MARK)
    return "\n".join(lines) + "\n"


def replace_section(text: str, section: str) -> str:
    """``text`` with the marked benchmark section replaced by ``section`` (appended if absent)."""
    start, end = text.find(BEGIN_MARK), text.find(END_MARK)
    if start != -1 and end != -1 and end > start:
        tail = text[end + len(END_MARK):]
        return text[:start] + section.rstrip("\n") + ("\n\n" + tail.lstrip("\n") if tail.strip() else "\n")
    return (text.rstrip("\n") + "\n\n" if text.strip() else "") + section


def plot_wer_vs_time(bench: dict, out: Path, dset: Optional[str]) -> bool:
    """WER on ``dset`` against cumulative student training wall time, one line per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"reference": "black", "scratch": "tab:red", "pruned": "tab:orange", "encrl": "tab:blue"}
    styles = {"clip+mse": "-", "mse": "--", "clip": ":"}
    markers = {0.0: "D", 0.5: "o", 0.667: "s", 0.833: "^"}
    fig, ax = plt.subplots(figsize=(8, 5))
    n = 0
    for s in bench["systems"]:
        wers = (s["wer_per_epoch"] or {}).get(dset) or []
        offset = (s["encrl_seconds"] or 0.0) + bench["reference_cache_seconds"] if s["kind"] == "encrl" else 0.0
        xs, ys, cum = [], [], offset
        for w, sec in zip(wers, s["seconds_per_epoch"]):
            cum += sec
            if w is not None:
                xs.append(cum / 60.0)
                ys.append(w)
        if not xs:
            continue
        ax.plot(xs, ys, marker=markers.get(s["ratio"], "x"), markersize=4, color=colors.get(s["kind"], "gray"),
                linestyle=styles.get(s["loss"] or "", "-"), alpha=0.6 + 0.4 * (1 - (s["ratio"] or 0.0)),
                label=f"{s['name']} ({s['kind']}, ratio {_fmt_ratio(s['ratio'])})")
        n += 1
    ax.set_xlabel("student training wall time (minutes; EncRL students start after EncRL + reference targets)")
    ax.set_ylabel(f"WER on {dset} (%)")
    ax.set_title("WER vs training wall time (CTC greedy, every epoch)")
    ax.grid(True, alpha=0.3)
    if n:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no per-epoch WERs yet (python -m espnet_lw.bin.benchmark epochs)",
                ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return n > 0


def write_report(recipe: Path, expdir: Path, test_sets: Sequence[str], epoch_sets: Sequence[str],
                 command: Optional[str], decode: Optional[str] = None, ref_exp: Optional[Path] = None,
                 results: str = "RESULTS.md", env: Optional[dict] = None) -> dict:
    """Write benchmark.json, the plot and the RESULTS.md section (+ copies next to RESULTS.md)."""
    bdir = expdir / "benchmark"
    if command is None and (bdir / "benchmark.json").is_file():
        command = json.loads((bdir / "benchmark.json").read_text(encoding="utf-8")).get("command")
    bench = build_benchmark(expdir, test_sets, epoch_sets, command, decode, ref_exp, env)
    text = json.dumps(bench, indent=1) + "\n"
    _atomic_write(bdir / "benchmark.json", text)
    results_path = recipe / results
    _atomic_write(results_path.parent / "benchmark.json", text)
    plot = bdir / "wer_vs_time.png"
    plot_wer_vs_time(bench, plot, epoch_sets[0] if epoch_sets else None)
    plot_copy = results_path.parent / "benchmark_wer_vs_time.png"
    shutil.copyfile(plot, plot_copy)
    old = results_path.read_text(encoding="utf-8") if results_path.is_file() else ""
    _atomic_write(results_path, replace_section(old, render_markdown(bench, test_sets, plot_copy.name)))
    logging.info("wrote %s, %s, %s and the section of %s", bdir / "benchmark.json", plot, plot_copy, results_path)
    return bench


# ---------------------------------------------------------------------------------- run
def check_run_args(run_args: Sequence[str]) -> None:
    for a in run_args:
        name = a.split("=", 1)[0]
        if name in RESERVED:
            raise UserError(f"{name} is set by the benchmark itself",
                            fix="give --test_sets / --student_args / --expdir / --dumpdir to the benchmark, "
                                "not as a run.sh option")


def plan(ratios: Sequence[str], ablation_ratio: Optional[str], test_sets: str, student_args: str,
         run_args: Sequence[str], ablation_confs: Dict[str, Path], expdir: str, dumpdir: str) -> List[List[str]]:
    """The ``./run.sh`` command lines of a benchmark, in order."""
    common = ["--test_sets", test_sets, "--expdir", expdir, "--dumpdir", dumpdir]
    cmds = [["./run.sh", "--stage", "1", "--stop_stage", "13", *common, *run_args]]
    sargs = ["--student_args", student_args] if student_args.strip() else []

    def student(config: str, mode: str, tag: str) -> List[str]:
        return ["./run.sh", "--stage", "11", "--stop_stage", "13", *common, "--student_config", config,
                "--student_mode", mode, "--student_tag", tag, *sargs, *run_args]

    for r in ratios:
        for mode in ("scratch", "pruned", "encrl"):
            cmds.append(student(f"conf/student_r{r}.yaml", mode, f"student_r{r}_{mode}"))
    if ablation_ratio:
        for term, path in ablation_confs.items():
            cmds.append(student(str(path), "encrl", path.stem))
    return cmds


def run_all(args, run_args: List[str]) -> None:
    recipe = Path(args.recipe_dir).resolve()
    if not (recipe / "run.sh").is_file():
        raise UserError("no run.sh here: not a recipe dir", str(recipe), "pass --recipe_dir egs2/<corpus>/lw1")
    check_run_args(run_args)
    os.chdir(recipe)
    expdir = Path(args.expdir)
    ratios = args.ratios.split()
    for r in ratios:
        if not Path(f"conf/student_r{r}.yaml").is_file():
            raise UserError(f"no student config for ratio {r}", f"conf/student_r{r}.yaml", "see conf/student_r*.yaml")
    abl = args.ablation_ratio if args.ablation_ratio not in ("", "none", None) else None
    confs = {}
    if abl:
        confs = write_ablation_configs(Path(f"conf/student_r{abl}.yaml"), expdir / "benchmark" / "conf",
                                       f"student_r{abl}")
    cmds = plan(ratios, abl, args.test_sets, args.student_args, run_args, confs, args.expdir, args.dumpdir)
    for c in cmds:
        logging.info("will run: %s", shlex.join(c))
    if args.dry_run:
        for c in cmds:
            print(shlex.join(c))
        return
    expdir.mkdir(parents=True, exist_ok=True)
    with CheckpointKeeper(expdir):
        for c in cmds:
            logging.info("running: %s", shlex.join(c))
            rc = subprocess.call(c)
            if rc != 0:
                raise UserError(f"'{shlex.join(c)}' failed (exit {rc})", fix="see its log above; re-running the "
                                "benchmark resumes (finished stages are skipped)")
    epoch_sets = args.epoch_test_sets.split()
    systems = discover_systems(expdir)
    decode_epochs(expdir, Path(args.dumpdir), systems, epoch_sets, args.batch_size)
    write_report(recipe, expdir, args.test_sets.split(), epoch_sets, args.command)


# ---------------------------------------------------------------------------------- CLI
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe_dir", default=".", help="the recipe dir (holds run.sh, exp/, RESULTS.md)")
    p.add_argument("--expdir", default="exp", help="exp dir, relative to the recipe dir")
    p.add_argument("--dumpdir", default="dump", help="dump dir, relative to the recipe dir")
    p.add_argument("--epoch_test_sets", default="test",
                   help="sets decoded at every epoch; the first one gives the plot and the speed-up")
    p.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    r = sub.add_parser("run", formatter_class=fmt,
                       help="train everything (finished stages skipped), decode every epoch, report",
                       description="Train the reference and the students with ./run.sh, decode every epoch, "
                                   "write the report. Options after '--' go to every ./run.sh call. Give "
                                   "--student_args=\"--max_epoch 2\" with '=' when the value starts with '--'.")
    _common(r)
    r.add_argument("--ratios", default="50 67 83", help="student configs conf/student_r<NN>.yaml to train")
    r.add_argument("--ablation_ratio", default="67", help="ratio of the loss ablations ('none': no ablation)")
    r.add_argument("--test_sets", default="dev test field", help="sets decoded with the final models")
    r.add_argument("--student_args", default="", help="extra training args of every student run")
    r.add_argument("--batch_size", type=int, default=8, help="per-epoch decoding batch size")
    r.add_argument("--command", default=None, help="the command to record (default: this one)")
    r.add_argument("--dry_run", action="store_true", help="print the ./run.sh commands and stop")

    e = sub.add_parser("epochs", formatter_class=fmt, help="decode + score every kept epoch checkpoint (cached)",
                       description="CTC greedy decoding and sclite scoring of every <N>epoch.pth of every system "
                                   "(exp dir + benchmark/ckpt); results cached in <expdir>/benchmark/epochs/.")
    _common(e)
    e.add_argument("--systems", default="", help="only these systems (exp dir names without 'asr_')")
    e.add_argument("--batch_size", type=int, default=8)

    rep = sub.add_parser("report", formatter_class=fmt, help="write benchmark.json, RESULTS.md section, plot",
                         description="Regenerate <expdir>/benchmark/benchmark.json, wer_vs_time.png and the "
                                     "benchmark section of RESULTS.md (+ copies next to it) from the exp dirs; "
                                     "no training, no decoding.")
    _common(rep)
    rep.add_argument("--test_sets", default="dev test field", help="sets of the final-WER columns")
    rep.add_argument("--decode_dir", default=None,
                     help=f"decode dir of the final WERs (default: {DEFAULT_DECODE}, else the first decode_*)")
    rep.add_argument("--ref_exp", default=None, help="the reference exp dir (default: found in the expdir)")
    rep.add_argument("--results", default="RESULTS.md", help="markdown file (relative to the recipe dir)")
    rep.add_argument("--command", default=None,
                     help="command to record (default: the one in the existing benchmark.json)")
    return p


def main(argv: Optional[List[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    run_args: List[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, run_args = argv[:i], argv[i + 1:]
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    if run_args and args.cmd != "run":
        raise UserError("options after '--' are for ./run.sh: only the 'run' subcommand takes them")
    if args.cmd == "run":
        if args.command is None:
            args.command = "python -m espnet_lw.bin.benchmark " + shlex.join(argv + (["--", *run_args] if run_args else []))
        run_all(args, run_args)
        return
    recipe = Path(args.recipe_dir).resolve()
    if not recipe.is_dir():
        raise UserError("no such recipe dir", str(recipe))
    os.chdir(recipe)
    expdir = Path(args.expdir)
    if not expdir.is_dir():
        raise UserError("no exp dir", str(recipe / expdir), "train something first (local/benchmark.sh)")
    epoch_sets = args.epoch_test_sets.split()
    if args.cmd == "epochs":
        systems = discover_systems(expdir)
        if args.systems.strip():
            wanted = set(args.systems.split())
            unknown = wanted - {s.name for s in systems}
            if unknown:
                raise UserError(f"unknown systems {sorted(unknown)}; known: {[s.name for s in systems]}")
            systems = [s for s in systems if s.name in wanted]
        decode_epochs(expdir, Path(args.dumpdir), systems, epoch_sets, args.batch_size)
    else:
        write_report(recipe, expdir, args.test_sets.split(), epoch_sets, args.command, args.decode_dir,
                     Path(args.ref_exp) if args.ref_exp else None, args.results)


if __name__ == "__main__":
    run_main(main)
