"""Stage 3: materialise every utterance of a data dir as a 16-bit PCM audio file.

Usage::

    python -m espnet_lw.bin.format_wav_scp [--fs 16000] [--audio_format flac|wav] [--nj 2]
        [--resample false] [--channel N] [--overwrite false] [--absolute_paths false]
        SRC_DATA_DIR DST_DUMP_DIR

ESPnet's ``sound`` reader opens plain audio files only, so this tool reads
each ``wav.scp`` entry -- a file path (anything libsndfile reads: WAV, FLAC,
NIST SPHERE with PCM samples, ...) or a shell pipe ``cmd |`` whose stdout is
WAV -- cuts the ``segments`` (start/end in seconds) when there are any, and
writes ``DST/data/<uttid>.<fmt>`` (16-bit PCM, mono).  Also written:
``DST/wav.scp``, ``DST/utt2num_samples``, ``DST/feats_type`` (``raw``),
``DST/audio_format``, and the source's ``text``, ``utt2spk``, ``spk2utt``,
``utt2*`` and ``spk2*`` tables restricted to the formatted utterances
(``segments``, ``utt2dur``, ``reco2*``, ``feats.scp``... are not copied:
``utt2num_samples`` replaces them).

Paths in ``DST/wav.scp``
    ``<DST_DUMP_DIR as given>/data/<uttid>.<fmt>``: when DST_DUMP_DIR is
    given relative (``dump/raw/train``, as asr.sh does from the recipe
    directory) the paths are relative to the current directory, exactly like
    ESPnet's own dump directories -- they keep working as long as tools run
    from the recipe directory, even if the recipe is moved.  Give an absolute
    DST_DUMP_DIR or ``--absolute_paths true`` to get absolute paths that work
    from any directory.

Decisions (fail loudly rather than guess):

* multi-channel audio is an error unless ``--channel N`` (0-based) is given
  (mono audio is always used as is, so a corpus mixing mono and stereo files
  works with ``--channel``);
* a sample rate other than ``--fs`` is an error naming the file unless
  ``--resample true`` (torchaudio's sinc resampler when available, else an
  FFT resampler in numpy); nothing is resampled silently;
* corrupt / unreadable / empty audio, a failing pipe (run with bash
  ``pipefail``), or a segment starting after or ending more than 10 ms after
  the end of its recording is an error naming the utterance and the source;
  overshoots up to 10 ms are clipped to the end of the recording;
* everything is written to a hidden temporary directory next to DST which is
  renamed to DST at the end (removed on error/Ctrl-C); an existing DST is
  only replaced with ``--overwrite true``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import multiprocessing
import os
import re
import signal
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from espnet_lw.data.kaldi_dir import (
    UTT,
    atomic_output_dir,
    atomic_write_text,
    check_valid_or_raise,
    copy_tables_subset,
    list_tables,
    parse_segment,
    read_data_dir_tables,
    sort_keys,
    write_kv,
)
from espnet_lw.utils.cli import UserError, run_main, setup_logging, str2bool

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
# audio input
# ---------------------------------------------------------------------------
def _parse_wav_bytes(buf: bytes) -> Tuple[np.ndarray, int]:
    """Minimal RIFF/WAVE parser for streamed WAV whose header sizes are bogus.

    Used only when libsndfile refuses a pipe's output.  Supports integer PCM
    (8/16/24/32 bit) and 32/64-bit float.  Returns ``(float32 [n, ch], rate)``.
    """
    if len(buf) < 12 or buf[:4] not in (b"RIFF", b"RIFX") or buf[8:12] != b"WAVE":
        raise ValueError("output is not a WAV stream (no RIFF/WAVE header)")
    pos, fmt = 12, None
    while pos + 8 <= len(buf):
        cid, size = buf[pos:pos + 4], struct.unpack("<I", buf[pos + 4:pos + 8])[0]
        body = pos + 8
        if cid == b"fmt ":
            tag, ch, rate, _, _, bits = struct.unpack("<HHIIHH", buf[body:body + 16])
            if tag == 0xFFFE and size >= 40:
                tag = struct.unpack("<H", buf[body + 24:body + 26])[0]
            fmt = (tag, ch, rate, bits)
        elif cid == b"data":
            if fmt is None:
                raise ValueError("WAV data chunk before fmt chunk")
            tag, ch, rate, bits = fmt
            data = buf[body:] if size == 0 or body + size > len(buf) else buf[body:body + size]
            width = bits // 8
            if ch < 1 or width < 1:
                raise ValueError("bad WAV fmt chunk")
            data = data[: len(data) // (width * ch) * width * ch]
            if tag == 3 and bits in (32, 64):
                x = np.frombuffer(data, "<f4" if bits == 32 else "<f8").astype(np.float32)
            elif tag == 1 and bits == 8:
                x = (np.frombuffer(data, np.uint8).astype(np.float32) - 128) / 128
            elif tag == 1 and bits == 16:
                x = np.frombuffer(data, "<i2").astype(np.float32) / 32768
            elif tag == 1 and bits == 24:
                b = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
                v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
                x = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / (1 << 23)
            elif tag == 1 and bits == 32:
                x = np.frombuffer(data, "<i4").astype(np.float32) / 2**31
            else:
                raise ValueError(f"unsupported WAV encoding (format tag {tag}, {bits} bits)")
            return x.reshape(-1, ch), rate
        pos = body + size + (size & 1)
    raise ValueError("no data chunk in WAV stream")


def _read_bytes_audio(buf: bytes) -> Tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        x, sr = sf.read(io.BytesIO(buf), dtype="float32", always_2d=True)
        return x, sr
    except Exception:  # libsndfile is strict about streamed headers
        return _parse_wav_bytes(buf)


def load_source(source: str, desc: str) -> Tuple[np.ndarray, int]:
    """Read one ``wav.scp`` value; return ``(float32 [samples, channels], rate)``.

    ``desc`` names what is being read (e.g. ``utterance 'a1'``) for error
    messages; raises :class:`UserError` naming it and the source.
    """
    import soundfile as sf

    source = source.strip()
    if source.endswith("|"):
        cmd = source[:-1].rstrip()
        try:
            proc = subprocess.run(
                ["bash", "-c", "set -o pipefail; " + cmd],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            )
        except OSError as e:
            raise UserError(f"{desc}: cannot run pipe command: {e}", cmd) from None
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise UserError(
                f"{desc}: pipe command failed with exit status {proc.returncode}"
                + (f": {err[-1]}" if err else ""),
                cmd,
                "run the command by hand from the recipe directory and fix it (or the file it reads)",
            )
        if not proc.stdout:
            raise UserError(f"{desc}: pipe command produced no output", cmd)
        try:
            return _read_bytes_audio(proc.stdout)
        except Exception as e:
            raise UserError(f"{desc}: pipe output is not readable audio ({e})", cmd,
                            "the command must write WAV to stdout (e.g. '... -t wav - |')") from None
    if not os.path.isfile(source):
        m = re.match(r"^(.+):(\d+)$", source)
        if m and os.path.isfile(m.group(1)):
            try:
                import kaldiio

                rate, x = kaldiio.load_mat(source)
                x = np.asarray(x)
                x = x.astype(np.float32) / 32768 if x.dtype.kind == "i" else x.astype(np.float32)
                return (x[:, None] if x.ndim == 1 else x), int(rate)
            except Exception as e:
                raise UserError(f"{desc}: cannot read Kaldi archive entry ({e})", source) from None
        raise UserError(
            f"{desc}: audio file not found (cwd: {os.getcwd()})",
            source,
            "fix the path in wav.scp (relative paths are relative to the directory you run from)",
        )
    try:
        x, sr = sf.read(source, dtype="float32", always_2d=True)
    except Exception as e:
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise UserError(
            f"{desc}: cannot read audio ({msg})",
            source,
            "the file is corrupt or in a format libsndfile cannot read; convert it with sox/ffmpeg, or for "
            "shorten-compressed SPHERE put 'sph2pipe -f wav FILE |' in wav.scp",
        ) from None
    return x, sr


# ---------------------------------------------------------------------------
# resampling
# ---------------------------------------------------------------------------
def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample ``x`` (float32 ``[n, ch]``) from ``sr_in`` to ``sr_out`` Hz."""
    if sr_in == sr_out:
        return x
    try:
        import torch
        import torchaudio.functional as AF

        torch.set_num_threads(1)
        y = AF.resample(torch.from_numpy(np.ascontiguousarray(x.T)), sr_in, sr_out)
        return y.numpy().T.astype(np.float32, copy=False)
    except ImportError:
        pass
    # Band-limited FFT resampling: keep the common low-frequency bins.
    n_in = x.shape[0]
    n_out = max(1, int(round(n_in * sr_out / sr_in)))
    spec = np.fft.rfft(x, axis=0)
    out = np.zeros((n_out // 2 + 1, x.shape[1]), dtype=spec.dtype)
    m = min(spec.shape[0], out.shape[0])
    out[:m] = spec[:m]
    return (np.fft.irfft(out, n=n_out, axis=0) * (n_out / n_in)).astype(np.float32)


def to_int16(x: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1) to int16 with rounding and clipping (exact for 16-bit sources)."""
    return np.clip(np.rint(x * 32768.0), -32768, 32767).astype(np.int16)


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


def threading_is_main() -> bool:
    """True in the main thread (signal handlers can only be installed there)."""
    import threading

    return threading.current_thread() is threading.main_thread()


def get_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    p = argparse.ArgumentParser(
        prog="python -m espnet_lw.bin.format_wav_scp",
        description="Stage 3: write every utterance of SRC_DATA_DIR (wav.scp files or 'cmd |' pipes, "
        "cut by segments) as a 16-bit PCM file DST_DUMP_DIR/data/<uttid>.<fmt>, plus wav.scp, "
        "utt2num_samples, feats_type, audio_format and the text/speaker tables.",
    )
    p.add_argument("src", metavar="SRC_DATA_DIR", help="Kaldi data dir with wav.scp (and optionally segments)")
    p.add_argument("dst", metavar="DST_DUMP_DIR", help="output dump dir, e.g. dump/raw/train "
                   "(wav.scp paths are written as <DST_DUMP_DIR>/data/<uttid>.<fmt>)")
    p.add_argument("--fs", type=int, default=16000, help="expected sample rate in Hz (default 16000)")
    p.add_argument("--audio_format", default="flac", choices=["flac", "wav"], help="output format (default flac)")
    p.add_argument("--nj", type=int, default=2, help="number of worker processes (default 2)")
    p.add_argument("--resample", type=str2bool, default=False,
                   help="true: resample audio whose rate differs from --fs; false (default): error")
    p.add_argument("--channel", type=int, default=None,
                   help="0-based channel to keep from multi-channel audio; mono audio is used as is "
                   "(default: multi-channel audio is an error)")
    p.add_argument("--overwrite", type=str2bool, default=False, help="replace an existing DST_DUMP_DIR (default false)")
    p.add_argument("--absolute_paths", type=str2bool, default=False,
                   help="write absolute paths in DST/wav.scp (default false: as DST_DUMP_DIR was given)")
    p.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv=None) -> None:
    """Entry point; see the module docstring."""
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    if threading_is_main():
        # make "kill" clean up the temporary output directory like Ctrl-C does
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.fs <= 0:
        raise UserError(f"--fs must be positive, got {args.fs}")
    if args.channel is not None and args.channel < 0:
        raise UserError(f"--channel must be >= 0, got {args.channel}")
    n = format_wav_scp(
        Path(args.src), Path(args.dst), fs=args.fs, audio_format=args.audio_format, nj=max(1, args.nj),
        resample_audio=args.resample, channel=args.channel, overwrite=args.overwrite,
        absolute_paths=args.absolute_paths,
    )
    logging.info("%s -> %s: %d utterances written as %s at %d Hz", args.src, args.dst, n, args.audio_format, args.fs)


if __name__ == "__main__":
    run_main(main)
