"""Stage 3 job machinery: write every utterance of a data dir as a 16-bit PCM audio file.

:func:`format_wav_scp` reads each ``wav.scp`` entry (see :func:`espnet_lw.data.audio.load_source`),
cuts the ``segments`` (start/end in seconds) when there are any, and writes
``DST/data/<uttid>.<fmt>`` (16-bit PCM, mono), one :class:`Job` per recording, in worker
processes (spawned, not forked).  Also written: ``DST/wav.scp``, ``DST/utt2num_samples``,
``DST/feats_type`` (``raw``), ``DST/audio_format``, and the source's ``text``, ``utt2spk``,
``spk2utt``, ``utt2*`` and ``spk2*`` tables restricted to the formatted utterances
(``segments``, ``utt2dur``, ``reco2*``, ``feats.scp``... are not copied: ``utt2num_samples``
replaces them).  The command line is ``python -m espnet_lw.bin.format_wav_scp``.

Decisions (fail loudly rather than guess):

* multi-channel audio is an error unless a channel (0-based) is given (mono audio is always
  used as is, so a corpus mixing mono and stereo files works with a channel);
* a sample rate other than ``fs`` is an error naming the file unless resampling is asked for;
  nothing is resampled silently;
* corrupt / unreadable / empty audio, a failing pipe, or a segment starting after or ending
  more than 10 ms after the end of its recording is an error naming the utterance and the
  source; overshoots up to 10 ms are clipped to the end of the recording;
* everything is written to a hidden temporary directory next to DST which is renamed to DST at
  the end (removed on error/Ctrl-C); an existing DST is only replaced with ``overwrite``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from espnet_lw.data.audio import load_source, resample, to_int16
from espnet_lw.data.kaldi_dir import (
    UTT,
    atomic_output_dir,
    check_valid_or_raise,
    copy_tables_subset,
    list_tables,
    parse_segment,
    read_data_dir_tables,
    sort_keys,
    write_kv,
)
from espnet_lw.utils.cli import UserError
from espnet_lw.utils.io import atomic_write_text

#: overshoot of a segment end past the recording end that is silently clipped
MAX_OVERSHOOT_S = 0.01
#: tables of the source that are not copied to the dump dir
NOT_COPIED = ("wav.scp", "segments", "utt2num_samples", "utt2dur", "utt2num_frames", "feats.scp", "cmvn.scp")


@dataclass
class Job:
    """One recording to read and the utterances to cut from it.

    ``cuts`` is ``[(uttid, start_s, end_s)]``; ``end_s is None`` means "whole file".
    """

    reco: str
    source: str
    cuts: List[Tuple[str, float, Optional[float]]]


@dataclass
class Config:
    """Settings shared by the workers."""

    fs: int
    audio_format: str
    resample: bool
    channel: Optional[int]
    out_data_dir: str  # where files are written (inside the temporary dir)


# ---------------------------------------------------------------------------
# worker
# ---------------------------------------------------------------------------
_CFG: Optional[Config] = None


def _init_worker(cfg: Config) -> None:
    global _CFG
    _CFG = cfg
    # the parent turns SIGTERM into a clean exit; workers just die when terminated
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def process_job(job: Job, cfg: Optional[Config] = None):
    """Format one recording.  Returns ``("ok", [(utt, nsamples), ...])`` or ``("error", message)``.

    Errors are returned rather than raised so they cross process boundaries intact.
    """
    import soundfile as sf

    cfg = cfg or _CFG
    try:
        utts = [c[0] for c in job.cuts]
        if utts == [job.reco]:
            uttdesc = f"utterance '{job.reco}'"
        else:
            shown = ", ".join(utts[:3]) + (", ..." if len(utts) > 3 else "")
            uttdesc = f"recording '{job.reco}' (utterance{'s' if len(utts) > 1 else ''} {shown})"
        x, sr = load_source(job.source, uttdesc)
        if x.shape[0] == 0:
            raise UserError(f"{uttdesc}: audio is empty (0 samples)", job.source)
        nch = x.shape[1]
        if nch > 1 and cfg.channel is None:
            raise UserError(
                f"{uttdesc}: audio has {nch} channels", job.source,
                "choose one with --channel N (0-based), or downmix the data",
            )
        if nch > 1:
            if cfg.channel >= nch:
                raise UserError(f"{uttdesc}: --channel {cfg.channel} asked but the audio has {nch} channel(s)",
                                job.source)
            x = x[:, cfg.channel:cfg.channel + 1]
        if sr != cfg.fs and not cfg.resample:
            raise UserError(
                f"{uttdesc}: sample rate is {sr} Hz, expected --fs {cfg.fs}",
                job.source,
                f"pass --resample true to resample to {cfg.fs} Hz, or convert the data "
                f"(e.g. sox IN -r {cfg.fs} OUT), or set --fs {sr}",
            )
        n = x.shape[0]
        dur = n / sr
        results = []
        for utt, start, end in job.cuts:
            if end is None:
                seg = x
            else:
                if start >= dur or end > dur + MAX_OVERSHOOT_S:
                    raise UserError(
                        f"utterance '{utt}': segment {start:g}-{end:g}s is beyond the end of recording "
                        f"'{job.reco}' ({dur:.3f}s)",
                        job.source,
                        "fix the segments file (or the recording)",
                    )
                b, e = int(round(start * sr)), min(n, int(round(end * sr)))
                seg = x[b:e]
            if sr != cfg.fs:
                seg = resample(seg, sr, cfg.fs)
            if seg.shape[0] == 0:
                raise UserError(f"utterance '{utt}': 0 samples after cutting", job.source)
            pcm = to_int16(seg[:, 0])
            path = os.path.join(cfg.out_data_dir, f"{utt}.{cfg.audio_format}")
            sf.write(path, pcm, cfg.fs, format=cfg.audio_format.upper(), subtype="PCM_16")
            results.append((utt, int(pcm.shape[0])))
        return "ok", results
    except UserError as e:
        return "error", e.format()
    except Exception as e:  # unexpected: still name the source
        return "error", f"{job.source}: recording '{job.reco}': {type(e).__name__}: {e}"


# ---------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------
def make_jobs(src: Path, tables: Dict[str, Dict[str, str]]) -> List[Job]:
    """Group utterances by recording (one read per recording)."""
    wav = tables["wav.scp"]
    bad = [u for u in tables.get("utt2spk", wav) if "/" in u or u in (".", "..") or "\0" in u]
    if bad:
        raise UserError(f"utterance id(s) that cannot be file names: {', '.join(bad[:5])}", str(src / "utt2spk"),
                        "rename them (no '/')")
    if "segments" not in tables:
        return [Job(u, wav[u], [(u, 0.0, None)]) for u in sort_keys(wav)]
    by_reco: Dict[str, List[Tuple[str, float, Optional[float]]]] = {}
    for utt, value in tables["segments"].items():
        seg = parse_segment(value)
        by_reco.setdefault(seg.reco, []).append((utt, seg.start, seg.end))
    return [Job(r, wav[r], sorted(by_reco[r])) for r in sort_keys(by_reco)]


def _progress(total: int, desc: str):
    try:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="utt", mininterval=1.0, dynamic_ncols=True)
    except ImportError:  # pragma: no cover
        class _Null:
            def update(self, n=1):
                pass

            def close(self):
                pass

        return _Null()


def _run_jobs(jobs: List[Job], cfg: Config, nj: int) -> Iterable:
    if nj <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield process_job(job, cfg)
        return
    # spawn, not fork: forking a process that already runs torch/OpenMP threads can hang
    ctx = multiprocessing.get_context("spawn")
    pool = ctx.Pool(min(nj, len(jobs)), initializer=_init_worker, initargs=(cfg,))
    try:
        yield from pool.imap_unordered(process_job, jobs, chunksize=1)
        pool.close()
    finally:
        pool.terminate()
        pool.join()


def format_wav_scp(
    src: Path,
    dst: Path,
    fs: int = 16000,
    audio_format: str = "flac",
    nj: int = 1,
    resample_audio: bool = False,
    channel: Optional[int] = None,
    overwrite: bool = False,
    absolute_paths: bool = False,
) -> int:
    """Format ``src`` into the dump dir ``dst``; return the number of utterances."""
    if not src.is_dir():
        raise UserError("source data directory does not exist", str(src))
    if not (src / "wav.scp").is_file():
        raise UserError("wav.scp not found", str(src / "wav.scp"))
    # empty transcripts are allowed here: stage 4 (filter_data_dir) removes them
    check_valid_or_raise(src, no_text=not (src / "text").is_file(), allow_empty_text=True)
    kinds = list_tables(src)
    tables = read_data_dir_tables(src)
    jobs = make_jobs(src, tables)
    n_utts = sum(len(j.cuts) for j in jobs)
    final_prefix = str(dst.resolve() if absolute_paths else dst)

    with atomic_output_dir(dst, overwrite=overwrite, overwrite_flag="--overwrite true") as tmp:
        data_dir = tmp / "data"
        data_dir.mkdir()
        cfg = Config(fs, audio_format, resample_audio, channel, str(data_dir))
        num_samples: Dict[str, int] = {}
        bar = _progress(n_utts, f"format {src.name}")
        try:
            with contextlib.closing(_run_jobs(jobs, cfg, nj)) as results:
                for status, payload in results:
                    if status == "error":
                        raise UserError(payload)
                    for utt, n in payload:
                        num_samples[utt] = n
                    bar.update(len(payload))
        finally:
            bar.close()
        write_kv(tmp / "wav.scp", {u: os.path.join(final_prefix, "data", f"{u}.{audio_format}") for u in num_samples})
        write_kv(tmp / "utt2num_samples", num_samples)
        copy_tables_subset(tables, kinds, tmp, num_samples, skip=NOT_COPIED + tuple(
            n for n, k in kinds.items() if k != UTT and n.startswith("reco2")))
        atomic_write_text(tmp / "feats_type", "raw\n")
        atomic_write_text(tmp / "audio_format", audio_format + "\n")
    return len(num_samples)
