"""Run the frozen reference once per utterance and cache its outputs for EncRL training.

    python -m espnet_lw.bin.dump_reference_targets \\
        --reference_config exp/asr_reference/config.yaml \\
        --reference_model exp/asr_reference/valid.loss.ave.pth \\
        --data_dir dump/raw/train --output_dir dump/ref_targets/train [--what enc|enc,logp] [--nj 1]

Writes kaldiio ark/scp files that ESPnet's data loader reads as optional inputs of the
``lw_encrl`` model::

    DIR/ref_enc.scp   (T' x D reference encoder output per utterance, float32)
    DIR/ref_logp.scp  (T' x V CTC log-posteriors of the reference's head; only with --what enc,logp)
    DIR/info.yaml     (reference files' paths/sizes/mtimes/sha256, data dir, timing, complete flag)

and are given to the trainer as ``--train_data_path_and_name_and_type DIR/ref_enc.scp,ref_enc,kaldi_ark``
(``model_conf.reference_cache: DIR`` makes the model refuse a stale or unfinished cache).
``ref_logp`` is rarely worth its disk space: the model derives it from ``ref_enc`` with the
reference's linear head, which costs next to nothing.

Utterances are run one at a time by default: ESPnet's conv2d subsampling counts output frames
from the padded batch length and its conv modules see the padding, so batched targets would depend
on the batch an utterance happened to land in (``--batch_seconds S`` batches anyway, faster on a
GPU; the model compares the frames both sides have, within ``cache_length_tolerance``). The run resumes
where it stopped (per-job ark/scp under DIR/split/ are appended to, finished utterances are
skipped); a finished cache is left alone, and a cache made for another reference or data dir is
refused unless ``--overwrite true`` (the old directory is moved aside, never deleted).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence

import yaml

from espnet_lw.utils.cli import UserError, run_main, setup_logging, str2bool

WHATS = ("enc", "logp")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m espnet_lw.bin.dump_reference_targets",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--reference_config", required=True, help="the reference's ESPnet config.yaml")
    p.add_argument("--reference_model", required=True, help="the reference's model file (.pth)")
    p.add_argument("--data_dir", required=True, help="data dir with wav.scp (e.g. dump/raw/train)")
    p.add_argument("--output_dir", required=True, help="where the ark/scp files and info.yaml go")
    p.add_argument("--what", default="enc", help="comma-separated subset of enc,logp [enc]")
    p.add_argument("--nj", type=int, default=1, help="parallel processes [1]")
    p.add_argument("--num_threads", type=int, default=1, help="torch threads per process [1]")
    p.add_argument("--device", default="cpu", help="cpu or cuda (with --nj N: cuda:0..N-1 round robin) [cpu]")
    p.add_argument("--batch_seconds", type=float, default=0.0,
                   help="seconds of (padded) audio per batch; 0: one utterance at a time, which makes the "
                        "targets independent of batching (ESPnet's subsampling and conv modules see the padding) [0]")
    p.add_argument("--overwrite", type=str2bool, default=False,
                   help="move an existing different cache aside (DIR.old.<time>) and start again [false]")
    p.add_argument("--log_level", default="INFO")
    return p


# ------------------------------------------------------------------------------ small file helpers
def read_two_columns(path: Path) -> Dict[str, str]:
    out: Dict[str, str] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split(maxsplit=1)
            if len(parts) == 2:
                out[parts[0]] = parts[1]
    return out


def absolute_ark_path(value: str) -> str:
    """``ark_path:offset`` with the path made absolute: the cache is read by students trained from
    other directories (``--ref_exp`` from another recipe), and ESPnet opens scp paths from its cwd."""
    path, sep, offset = value.rpartition(":")
    if not sep or not offset.isdigit():
        return value
    return f"{Path(path).resolve()}:{offset}"


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


# ------------------------------------------------------------------------------ one job
def run_job(job: int, keys: List[str], conf: dict) -> dict:
    """Process ``keys`` (one job): resumable, appends to DIR/split/ref_<what>.<job>.{ark,scp}."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415
    from espnet2.fileio.sound_scp import SoundScpReader  # noqa: PLC0415
    from kaldiio import save_ark  # noqa: PLC0415
    from tqdm import tqdm  # noqa: PLC0415

    from espnet_lw.models.encrl import load_reference  # noqa: PLC0415

    torch.set_num_threads(conf["num_threads"])
    split = Path(conf["output_dir"]) / "split"
    what = conf["what"]
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
    device = conf["device"]
    if device.startswith("cuda") and conf["nj"] > 1 and ":" not in device:
        device = f"cuda:{job % max(1, torch.cuda.device_count())}"
    model, _ = load_reference(conf["reference_config"], conf["reference_model"], device=device)
    reader = SoundScpReader(str(Path(conf["data_dir"]) / "wav.scp"), dtype="float32")
    lengths = conf["lengths"]
    batches = make_batches(todo, lengths, conf["max_samples"])
    bar = tqdm(total=len(todo), desc=f"ref targets job {job}", unit="utt", position=job, file=sys.stderr,
               mininterval=0.5 if sys.stderr.isatty() else 30.0)
    for batch in batches:
        t0 = time.perf_counter()
        wavs = []
        for k in batch:
            _, x = reader[k]
            if x.ndim != 1:
                raise UserError(f"{k}: expected mono audio, got shape {x.shape}",
                                str(Path(conf["data_dir"]) / "wav.scp"))
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
            save_ark(str(ark[w]), arrays, scp=str(scp[w]), append=True)
        stats["seconds"] += time.perf_counter() - t0
        stats["utts"] += len(batch)
        stats["samples"] += int(lens.sum())
        bar.update(len(batch))
    bar.close()
    return stats


def _job_entry(args):
    job, keys, conf = args
    setup_logging(conf["log_level"])
    try:
        return run_job(job, keys, conf)
    except UserError as e:
        return {"error": e.format()}


# ------------------------------------------------------------------------------ main
def _write_info(path: Path, info: dict) -> None:
    tmp = path.with_suffix(".yaml.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        yaml.safe_dump(info, fh, sort_keys=False)
    os.replace(tmp, path)


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    what = [w.strip() for w in args.what.split(",") if w.strip()]
    bad = [w for w in what if w not in WHATS]
    if bad or not what:
        raise UserError(f"--what must be a comma-separated subset of {','.join(WHATS)}, got {args.what!r}")
    what = [w for w in WHATS if w in what]
    for f, name in ((args.reference_config, "reference config"), (args.reference_model, "reference model")):
        if not Path(f).is_file():
            raise UserError(f"{name} not found", f)
    data_dir = Path(args.data_dir)
    if not (data_dir / "wav.scp").is_file():
        raise UserError("no wav.scp", str(data_dir), "give a formatted data dir such as dump/raw/train")
    out = Path(args.output_dir)
    from espnet_lw.models.encrl import reference_fingerprint  # noqa: PLC0415 - slow import, after the checks

    fingerprint = reference_fingerprint(args.reference_config, args.reference_model)
    info_file = out / "info.yaml"

    if info_file.is_file():
        with info_file.open(encoding="utf-8") as fh:
            old = yaml.safe_load(fh) or {}
        reasons = []
        for name in ("config", "model"):
            if (old.get("reference") or {}).get(name, {}).get("sha256") != fingerprint[name]["sha256"]:
                reasons.append(f"another reference {name} ({(old.get('reference') or {}).get(name, {}).get('path')})")
        if old.get("data_dir") != str(data_dir.resolve()):
            reasons.append(f"another data dir ({old.get('data_dir')})")
        if old.get("what") != what:
            reasons.append(f"other targets ({old.get('what')})")
        if reasons and not args.overwrite:
            raise UserError(
                "this cache was made with " + "; ".join(reasons),
                str(info_file),
                "pass --overwrite true to move it aside and dump again, or choose another --output_dir",
            )
        if reasons:
            aside = out.with_name(out.name + ".old." + time.strftime("%Y%m%d%H%M%S"))
            logging.warning("moving the old cache %s aside to %s", out, aside)
            shutil.move(str(out), str(aside))
        elif old.get("complete"):
            logging.info("%s is complete for this reference and data dir: nothing to do", out)
            return
        else:
            logging.info("%s is unfinished: resuming", out)
    elif out.exists() and any(out.iterdir()):
        raise UserError("the output dir exists, is not empty and has no info.yaml", str(out),
                        "choose another --output_dir or remove it")

    (out / "split").mkdir(parents=True, exist_ok=True)
    wav = read_two_columns(data_dir / "wav.scp")
    if not wav:
        raise UserError("empty wav.scp", str(data_dir / "wav.scp"))
    lengths = utterance_lengths(data_dir, wav)
    info = {
        "reference": fingerprint,
        "data_dir": str(data_dir.resolve()),
        "what": what,
        "num_utterances": len(wav),
        "complete": False,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    _write_info(info_file, info)

    # sample rate: from the reference's frontend (fs of the config), default 16 kHz
    with open(args.reference_config, encoding="utf-8") as fh:
        ref_conf = yaml.safe_load(fh)
    fs = (ref_conf.get("frontend_conf") or {}).get("fs", 16000)
    if isinstance(fs, str):
        import humanfriendly  # noqa: PLC0415

        fs = humanfriendly.parse_size(fs)
    keys = sorted(wav, key=lambda k: (lengths[k], k))
    nj = max(1, min(args.nj, len(keys)))
    job_keys = [keys[j::nj] for j in range(nj)]  # round robin: every job gets short and long ones
    conf = {
        "reference_config": args.reference_config, "reference_model": args.reference_model,
        "data_dir": str(data_dir), "output_dir": str(out), "what": what, "nj": nj,
        "num_threads": args.num_threads, "device": args.device, "lengths": lengths,
        "max_samples": int(args.batch_seconds * fs), "log_level": args.log_level,
    }
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
            "device": args.device, "nj": nj, "num_threads": args.num_threads,
        },
        disk_bytes=sum(f.stat().st_size for f in (out / "split").glob("*.ark")),
    )
    _write_info(info_file, info)
    if done_samples:
        logging.info(
            "%s: %d utterances (%.3f h of audio) in %.1f s wall, %.1f compute-s per hour of audio",
            out, info["this_run"]["utterances"], done_samples / fs / 3600, wall,
            info["this_run"]["compute_seconds_per_audio_hour"],
        )


if __name__ == "__main__":
    run_main(main)
