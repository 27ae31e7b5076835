"""The reference-target cache: the frozen reference's outputs, computed once per utterance.

:func:`dump_reference_targets` (the job of ``python -m espnet_lw.bin.dump_reference_targets``)
writes kaldiio ark/scp files that ESPnet's data loader reads as optional inputs of the
``lw_encrl`` model::

    DIR/ref_enc.scp   (T' x D reference encoder output per utterance, float32)
    DIR/ref_logp.scp  (T' x V CTC log-posteriors of the reference's head, the targets of KD: Kaldi's
                       2-byte compressed matrix, about 3e-4 from the float32 values; what enc,logp)
    DIR/info.yaml     (reference files' paths/sizes/mtimes/sha256, data dir and a hash of its contents,
                       timing, complete flag)

Both targets come from the same one pass over the data (the default ``what`` is ``enc,logp``).
:func:`reference_fingerprint` says which reference made a cache, :func:`data_fingerprint` which data
(the sha256 of the data dir's wav.scp, text, utt2num_samples and segments: re-filtering the training
set changes it, a copy of the same data does not). :func:`check_reference_cache` refuses an unfinished
cache, one made with another reference or from data that changed since, and one without the targets
a student needs (``model_conf.reference_cache``; the ``kd`` student's configs).

Utterances are run one at a time by default: ESPnet's conv2d subsampling counts output frames
from the padded batch length and its conv modules see the padding, so batched targets would depend
on the batch an utterance happened to land in (``batch_seconds`` batches anyway, faster on a GPU;
the model compares the frames both sides have, within ``cache_length_tolerance``). The run resumes
where it stopped (per-job ark/scp under DIR/split/ are appended to, finished utterances are
skipped); a finished cache is left alone, and a cache made for another reference, data dir or data,
or one lacking a requested target (caches older than the log-posteriors hold ``enc`` only) is refused
unless ``overwrite`` (the old directory is moved aside, never deleted, and the cache is made again).
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing as mp
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from espnet_lw.utils.cli import UserError, setup_logging
from espnet_lw.utils.io import atomic_write_text, load_yaml, sha256_of, write_yaml

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]

#: the targets a cache can hold, in this order
WHATS = ("enc", "logp")
#: what a dump writes unless told otherwise: both, from the one pass (EncRL reads enc, KD reads logp)
DEFAULT_WHAT = ("enc", "logp")
DUMP_COMMAND = "espnet_lw.bin.dump_reference_targets"
#: kaldiio compression of the log-posteriors: Kaldi's kTwoByteAuto (CM2), 2 bytes a value, global range
LOGP_COMPRESSION = 3
LOGP_FORMAT = "kaldi compressed matrix CM2 (2 bytes per value)"
#: the files of a data dir whose contents a cache's data hash covers (those present)
DATA_FILES = ("wav.scp", "text", "utt2num_samples", "segments")


# ------------------------------------------------------------------------------ which reference
def reference_fingerprint(reference_config: PathLike, reference_model: PathLike) -> dict:
    """What identifies a reference: paths, sizes, mtimes and sha256 of its config and model."""
    out = {}
    for name, f in (("config", reference_config), ("model", reference_model)):
        p = Path(f)
        st = p.stat()
        out[name] = {"path": str(p.resolve()), "size": st.st_size, "mtime": st.st_mtime, "sha256": sha256_of(p)}
    return out


def data_fingerprint(data_dir: PathLike) -> dict:
    """What identifies the data a cache was made from: the sha256 of each of :data:`DATA_FILES` the
    dir holds, and one sha256 over them all (``{"files": {name: sha256}, "sha256": ...}``)."""
    data_dir = Path(data_dir)
    files = {name: sha256_of(data_dir / name) for name in DATA_FILES if (data_dir / name).is_file()}
    total = hashlib.sha256("".join(f"{k} {v}\n" for k, v in sorted(files.items())).encode()).hexdigest()
    return {"files": files, "sha256": total}


def data_changes(old: Optional[dict], data_dir: PathLike) -> Optional[str]:
    """Why the cache info's ``data`` no longer describes ``data_dir`` (None: it does)."""
    if not old or not isinstance(old, dict) or "sha256" not in old:
        return "it records no hash of its data (made by an older espnet-lw)"
    now = data_fingerprint(data_dir)
    if now["sha256"] == old["sha256"]:
        return None
    names = sorted(set(now["files"]) | set(old.get("files") or {}))
    changed = [n for n in names if now["files"].get(n) != (old.get("files") or {}).get(n)]
    return f"the data changed since it was made ({', '.join(changed)} of {data_dir})"


def check_reference_cache(
    cache_dir: PathLike,
    reference_config: PathLike,
    reference_model: PathLike,
    need: Sequence[str] = ("enc",),
    data_dir: Optional[PathLike] = None,
) -> dict:
    """Refuse a target cache that is unfinished, was made with another reference or from data that
    changed since (``data_dir``, default: the one it was made from), or lacks a target of ``need``;
    return its info."""
    cache_dir = Path(cache_dir)
    info_file = cache_dir / "info.yaml"
    if not info_file.is_file():
        raise UserError("no info.yaml: not a reference-target cache", str(cache_dir),
                        f"write it with python -m {DUMP_COMMAND}")
    info = load_yaml(info_file, "reference-target cache info", allow_empty=True)
    if not info.get("complete"):
        raise UserError("the reference-target cache is unfinished", str(cache_dir),
                        f"re-run {DUMP_COMMAND} with the same arguments (it resumes)")
    now = reference_fingerprint(reference_config, reference_model)
    for name in ("config", "model"):
        if (info.get("reference") or {}).get(name, {}).get("sha256") != now[name]["sha256"]:
            raise UserError(
                f"stale cache: it was made with another reference {name} "
                f"({(info.get('reference') or {}).get(name, {}).get('path')}), not {now[name]['path']}",
                str(info_file),
                f"re-run {DUMP_COMMAND} --output_dir {cache_dir} --overwrite true, "
                "or drop the cached ref_* data files",
            )
    missing = [w for w in need if w not in (info.get("what") or [])]
    if missing:
        old_note = "; caches made before the log-posteriors were cached hold enc only" if "logp" in missing else ""
        raise UserError(f"the cache has no {', '.join(missing)} targets (it has {info.get('what')}{old_note})",
                        str(cache_dir),
                        f"re-run {DUMP_COMMAND} --output_dir {cache_dir} --what {','.join(WHATS)} --overwrite true "
                        "(lw.sh stage 11 does this itself)")
    data = Path(data_dir) if data_dir is not None else Path(str(info.get("data_dir") or ""))
    if not (data / "wav.scp").is_file():
        raise UserError(f"the data dir the cache was made from ({data}) has no wav.scp: cannot tell whether the "
                        "cache still fits the training data", str(info_file),
                        f"re-run {DUMP_COMMAND} on the training data dir with --overwrite true")
    why = data_changes(info.get("data"), data)
    if why:
        raise UserError(f"stale cache: {why}", str(info_file),
                        f"re-run {DUMP_COMMAND} --data_dir {data} --output_dir {cache_dir} --overwrite true "
                        "(lw.sh stage 11 does this itself)")
    return info


# ------------------------------------------------------------------------------ small file helpers
def parse_what(what: str) -> List[str]:
    """``"logp,enc"`` -> ``["enc", "logp"]`` (a comma-separated subset of :data:`WHATS`)."""
    items = [w.strip() for w in what.split(",") if w.strip()]
    bad = [w for w in items if w not in WHATS]
    if bad or not items:
        raise UserError(f"--what must be a comma-separated subset of {','.join(WHATS)}, got {what!r}")
    return [w for w in WHATS if w in items]


def read_two_columns(path: Path) -> Dict[str, str]:
    out: Dict[str, str] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split(maxsplit=1)
            if len(parts) == 2:
                out[parts[0]] = parts[1]
    return out


def _ark_and_offset(value: str) -> Optional[Tuple[str, str]]:
    """``(ark_path, offset)`` of an scp value ``ark_path:offset``; ``None`` for any other value."""
    path, sep, offset = value.rpartition(":")
    return (path, offset) if sep and offset.isdigit() else None


def absolute_ark_path(value: str) -> str:
    """``ark_path:offset`` with the path made absolute: the cache is read by students trained from
    other directories (``--ref_exp`` from another recipe), and ESPnet opens scp paths from its cwd."""
    parsed = _ark_and_offset(value)
    return value if parsed is None else f"{Path(parsed[0]).resolve()}:{parsed[1]}"


def read_scp_keys(path: Path) -> Dict[str, str]:
    """Complete lines of an scp being appended to; a torn last line (crash) is cut off the file."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with path.open("r+b") as fh:
            fh.truncate(cut)
        data = data[:cut]
    out: Dict[str, str] = {}
    for line in data.decode("utf-8").splitlines():
        parts = line.split(maxsplit=1)
        if len(parts) == 2:
            out[parts[0]] = parts[1]
    return out


def utterance_lengths(data_dir: Path, wav: Dict[str, str]) -> Dict[str, int]:
    """Samples per utterance, from utt2num_samples when present (else read the headers)."""
    f = data_dir / "utt2num_samples"
    if f.is_file():
        n = {k: int(v) for k, v in read_two_columns(f).items()}
        if all(k in n for k in wav):
            return n
    import soundfile  # noqa: PLC0415

    out = {}
    for k, v in wav.items():
        try:
            out[k] = soundfile.info(v).frames
        except Exception as e:  # noqa: BLE001
            raise UserError(f"cannot read the audio of {k} ({v}): {e}", str(data_dir / "wav.scp")) from e
    return out


def make_batches(keys: Sequence[str], lengths: Dict[str, int], max_samples: int) -> List[List[str]]:
    """Length-sorted batches whose padded size (batch x longest) stays under ``max_samples``
    (``max_samples <= 0``: one utterance per batch)."""
    if max_samples <= 0:
        return [[k] for k in sorted(keys, key=lambda k: (lengths[k], k))]
    batches: List[List[str]] = []
    cur: List[str] = []
    for k in sorted(keys, key=lambda k: (lengths[k], k)):
        longest = lengths[k]
        if cur and longest * (len(cur) + 1) > max_samples:
            batches.append(cur)
            cur = []
        cur.append(k)
    if cur:
        batches.append(cur)
    return batches


def sample_rate_of(reference_config: PathLike) -> int:
    """The reference's sampling rate (``frontend_conf.fs`` of its config; 16 kHz when not given)."""
    ref_conf = load_yaml(reference_config, "reference config")
    fs = (ref_conf.get("frontend_conf") or {}).get("fs", 16000)
    if isinstance(fs, str):
        import humanfriendly  # noqa: PLC0415

        fs = humanfriendly.parse_size(fs)
    return fs


# ------------------------------------------------------------------------------ one job
@dataclass
class JobConfig:
    """What every job of a dump needs (pickled into ``spawn``-ed worker processes)."""

    reference_config: str
    reference_model: str
    data_dir: str
    output_dir: str
    what: List[str]
    nj: int
    num_threads: int
    device: str
    lengths: Dict[str, int]
    max_samples: int
    log_level: str


def run_job(job: int, keys: List[str], conf: JobConfig) -> dict:
    """Process ``keys`` (one job): resumable, appends to DIR/split/ref_<what>.<job>.{ark,scp}."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415
    from espnet2.fileio.sound_scp import SoundScpReader  # noqa: PLC0415
    from kaldiio import save_ark  # noqa: PLC0415
    from tqdm import tqdm  # noqa: PLC0415

    from espnet_lw.models.loading import load_reference  # noqa: PLC0415 - imports torch

    torch.set_num_threads(conf.num_threads)
    split = Path(conf.output_dir) / "split"
    what = conf.what
    ark = {w: split / f"ref_{w}.{job}.ark" for w in what}
    scp = {w: split / f"ref_{w}.{job}.scp" for w in what}
    done = None
    for w in what:
        ks = set(read_scp_keys(scp[w]))
        done = ks if done is None else done & ks
    todo = [k for k in keys if k not in done]
    stats = {"utts": 0, "samples": 0, "seconds": 0.0}
    if not todo:
        return stats
    device = conf.device
    if device.startswith("cuda") and conf.nj > 1 and ":" not in device:
        device = f"cuda:{job % max(1, torch.cuda.device_count())}"
    model, _ = load_reference(conf.reference_config, conf.reference_model, device=device)
    reader = SoundScpReader(str(Path(conf.data_dir) / "wav.scp"), dtype="float32")
    batches = make_batches(todo, conf.lengths, conf.max_samples)
    bar = tqdm(total=len(todo), desc=f"ref targets job {job}", unit="utt", position=job, file=sys.stderr,
               mininterval=0.5 if sys.stderr.isatty() else 30.0)
    for batch in batches:
        t0 = time.perf_counter()
        wavs = []
        for k in batch:
            _, x = reader[k]
            if x.ndim != 1:
                raise UserError(f"{k}: expected mono audio, got shape {x.shape}",
                                str(Path(conf.data_dir) / "wav.scp"))
            wavs.append(torch.from_numpy(np.ascontiguousarray(x)))
        lens = torch.tensor([len(w) for w in wavs])
        speech = torch.zeros(len(wavs), int(lens.max()))
        for i, w in enumerate(wavs):
            speech[i, : len(w)] = w
        with torch.no_grad():
            enc, enc_lens = model.encode(speech.to(device), lens.to(device))
            if isinstance(enc, tuple):
                enc = enc[0]
            out = {"enc": enc}
            if "logp" in what:
                out["logp"] = model.ctc.log_softmax(enc)
        enc_lens = enc_lens.cpu().tolist()
        for w in what:
            arrays = {k: out[w][i, : enc_lens[i]].float().cpu().numpy() for i, k in enumerate(batch)}
            save_ark(str(ark[w]), arrays, scp=str(scp[w]), append=True,
                     compression_method=LOGP_COMPRESSION if w == "logp" else None)
        stats["seconds"] += time.perf_counter() - t0
        stats["utts"] += len(batch)
        stats["samples"] += int(lens.sum())
        bar.update(len(batch))
    bar.close()
    return stats


def _job_entry(args):
    job, keys, conf = args
    setup_logging(conf.log_level)
    try:
        return run_job(job, keys, conf)
    except UserError as e:
        return {"error": e.format()}


# ------------------------------------------------------------------------------ the dump
def _check_existing(out: Path, info_file: Path, fingerprint: dict, data_dir: Path, what: List[str],
                    overwrite: bool) -> bool:
    """Decide about an existing output dir; True when it is a complete cache of the same inputs
    holding (at least) the targets ``what``."""
    if info_file.is_file():
        old = load_yaml(info_file, "reference-target cache info", allow_empty=True)
        reasons = []
        for name in ("config", "model"):
            if (old.get("reference") or {}).get(name, {}).get("sha256") != fingerprint[name]["sha256"]:
                reasons.append(f"another reference {name} ({(old.get('reference') or {}).get(name, {}).get('path')})")
        moved = old.get("data_dir") != str(data_dir.resolve())
        why = data_changes(old.get("data"), data_dir)
        if why:
            reasons.append(f"another data dir ({old.get('data_dir')})" if moved else why)
        old_what = list(old.get("what") or [])
        if old.get("complete") and not set(what) <= set(old_what):
            old_note = ": caches made before the log-posteriors were cached hold enc only" if "logp" in what else ""
            reasons.append(f"other targets ({old_what}; wanted {what}{old_note})")
        elif not old.get("complete") and old_what != what:
            reasons.append(f"other targets ({old_what}, unfinished; wanted {what})")
        relocated = None  # a complete cache whose scp files point elsewhere (a copied / moved recipe dir)
        if not reasons and old.get("complete"):
            scps, elsewhere = _scps_beside(out, old_what)
            if scps is None:
                reasons.append("its scp files point at ark files that are not beside it (a partial copy?)")
            elif moved or elsewhere:
                relocated = scps
        if reasons and not overwrite:
            raise UserError(
                "this cache does not fit: " + "; ".join(reasons),
                str(info_file),
                "pass --overwrite true to move it aside and dump again, or choose another --output_dir",
            )
        if reasons:
            aside = out.with_name(out.name + ".old." + time.strftime("%Y%m%d%H%M%S"))
            logger.warning("moving the old cache %s aside to %s", out, aside)
            shutil.move(str(out), str(aside))
        elif old.get("complete"):
            if relocated is not None:
                _relocate(out, info_file, old, data_dir, relocated)
            logger.info("%s is complete for this reference and data dir: nothing to do", out)
            return True
        else:
            logger.info("%s is unfinished: resuming", out)
    elif out.exists() and any(out.iterdir()):
        raise UserError("the output dir exists, is not empty and has no info.yaml", str(out),
                        "choose another --output_dir or remove it")
    return False


def _scps_beside(out: Path, what: Sequence[str]) -> Tuple[Optional[Dict[str, str]], bool]:
    """Each ``ref_<what>.scp`` of the cache read once: its text pointed at the arks of the same names under
    ``out/split`` (``None`` when one of them is not there: a partial copy), and whether any line pointed
    elsewhere (a recipe dir copied or moved with its cache)."""
    split = (out / "split").resolve()
    beside: Dict[str, Optional[Path]] = {}  # ark path of the scp -> the ark of its name under out/split
    texts: Dict[str, str] = {}
    elsewhere = False
    for w in what:
        lines = []
        for key, value in read_scp_keys(out / f"ref_{w}.scp").items():
            parsed = _ark_and_offset(value)
            if parsed is None:
                return None, True
            if parsed[0] not in beside:
                here = split / Path(parsed[0]).name
                beside[parsed[0]] = here if here.is_file() else None
                elsewhere = elsewhere or Path(parsed[0]).resolve() != here
            if beside[parsed[0]] is None:
                return None, True
            lines.append(f"{key} {beside[parsed[0]]}:{parsed[1]}\n")
        texts[w] = "".join(lines)
    return texts, elsewhere


def _relocate(out: Path, info_file: Path, info: dict, data_dir: Path, scps: Dict[str, str]) -> None:
    """A complete cache copied or moved together with its recipe dir (the data lists unchanged): write
    its scp files pointed at the arks beside them (``scps``, from :func:`_scps_beside`) and record the
    data dir it now belongs to, so that it neither reads the old copy's files nor is dumped again."""
    for w, text in scps.items():
        atomic_write_text(out / f"ref_{w}.scp", text)
    logger.info("%s: made for %s, now used from %s (same data lists): its scp files point at %s",
                out, info.get("data_dir"), data_dir.resolve(), (out / "split").resolve())
    write_yaml(info_file, {**info, "data_dir": str(data_dir.resolve()),
                           "relocated_from": info.get("relocated_from") or info.get("data_dir")})


def dump_reference_targets(
    reference_config: PathLike,
    reference_model: PathLike,
    data_dir: PathLike,
    output_dir: PathLike,
    what: Union[str, Sequence[str]] = DEFAULT_WHAT,
    nj: int = 1,
    num_threads: int = 1,
    device: str = "cpu",
    batch_seconds: float = 0.0,
    overwrite: bool = False,
    log_level: str = "INFO",
) -> Optional[dict]:
    """Run the reference over ``data_dir`` (``nj`` processes) and cache its outputs in ``output_dir``.

    Returns the cache's info (as written to ``info.yaml``), or None when a complete cache of the
    same reference and data holding the targets ``what`` was already there (it is left alone).
    """
    what = parse_what(what) if isinstance(what, str) else parse_what(",".join(what))
    for f, name in ((reference_config, "reference config"), (reference_model, "reference model")):
        if not Path(f).is_file():
            raise UserError(f"{name} not found", str(f))
    data_dir = Path(data_dir)
    if not (data_dir / "wav.scp").is_file():
        raise UserError("no wav.scp", str(data_dir), "give a formatted data dir such as dump/raw/train")
    out = Path(output_dir)
    fingerprint = reference_fingerprint(reference_config, reference_model)
    info_file = out / "info.yaml"
    if _check_existing(out, info_file, fingerprint, data_dir, what, overwrite):
        return None

    (out / "split").mkdir(parents=True, exist_ok=True)
    wav = read_two_columns(data_dir / "wav.scp")
    if not wav:
        raise UserError("empty wav.scp", str(data_dir / "wav.scp"))
    lengths = utterance_lengths(data_dir, wav)
    info = {
        "reference": fingerprint,
        "data_dir": str(data_dir.resolve()),
        "data": data_fingerprint(data_dir),
        "what": what,
        "formats": {w: LOGP_FORMAT if w == "logp" else "kaldi float32 matrix" for w in what},
        "num_utterances": len(wav),
        "complete": False,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_yaml(info_file, info)

    fs = sample_rate_of(reference_config)
    keys = sorted(wav, key=lambda k: (lengths[k], k))
    nj = max(1, min(nj, len(keys)))
    job_keys = [keys[j::nj] for j in range(nj)]  # round robin: every job gets short and long ones
    conf = JobConfig(
        reference_config=str(reference_config), reference_model=str(reference_model), data_dir=str(data_dir),
        output_dir=str(out), what=what, nj=nj, num_threads=num_threads, device=device, lengths=lengths,
        max_samples=int(batch_seconds * fs), log_level=log_level,
    )
    t0 = time.perf_counter()
    if nj == 1:
        results = [run_job(0, job_keys[0], conf)]
    else:
        with mp.get_context("spawn").Pool(nj) as pool:
            results = pool.map(_job_entry, [(j, job_keys[j], conf) for j in range(nj)])
    wall = time.perf_counter() - t0
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise UserError(errors[0])

    # merge the per-job scp files (a key written twice after a crash: the last one wins)
    for w in what:
        merged: Dict[str, str] = {}
        for j in range(nj):
            merged.update(read_scp_keys(out / "split" / f"ref_{w}.{j}.scp"))
        missing = [k for k in wav if k not in merged]
        if missing:
            raise UserError(f"{len(missing)} utterances have no ref_{w} (e.g. {missing[0]})", str(out),
                            "re-run the same command to resume")
        with (out / f"ref_{w}.scp").open("w", encoding="utf-8") as fh:
            for k in sorted(wav):
                fh.write(f"{k} {absolute_ark_path(merged[k])}\n")

    done_samples = sum(r["samples"] for r in results)
    compute = sum(r["seconds"] for r in results)
    hours = sum(lengths.values()) / fs / 3600
    info.update(
        complete=True,
        finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
        audio_hours=round(hours, 6),
        this_run={
            "utterances": sum(r["utts"] for r in results),
            "audio_hours": round(done_samples / fs / 3600, 6),
            "wall_seconds": round(wall, 3),
            "compute_seconds": round(compute, 3),
            "compute_seconds_per_audio_hour": round(compute / (done_samples / fs / 3600), 3) if done_samples else None,
            "device": device, "nj": nj, "num_threads": num_threads,
        },
        disk_bytes=sum(f.stat().st_size for f in (out / "split").glob("*.ark")),
    )
    write_yaml(info_file, info)
    if done_samples:
        logger.info(
            "%s: %d utterances (%.3f h of audio) in %.1f s wall, %.1f compute-s per hour of audio",
            out, info["this_run"]["utterances"], done_samples / fs / 3600, wall,
            info["this_run"]["compute_seconds_per_audio_hour"],
        )
    return info
