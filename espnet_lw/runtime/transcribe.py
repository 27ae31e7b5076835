"""Transcribe audio files with an exported model: the library behind the ``transcribe`` command.

Inputs (:func:`collect_inputs`): audio files (uttid = the file's stem), directories (searched
recursively for the extensions in ``AUDIO_EXTENSIONS``) and Kaldi ``wav.scp`` files
(``uttid path`` per line; command entries ``uttid cmd |`` are refused). Each utterance is read
in windows of at most 20 s (``max_seconds``) cut at pauses (:mod:`espnet_lw.runtime.audio`); the window texts are
joined with a space. A file that cannot be transcribed gets one ``ERROR: <file>: <why>`` line on
stderr and the others go on; :func:`transcribe` returns the number of such failures.

Output: ``uttid text`` per line, or JSON lines ``{"uttid", "text", "duration", "seconds",
"rtf", "path"}`` (``seconds``: reading, features, network and decoding of that file, model
loading excluded; ``rtf = seconds / duration``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from espnet_lw.runtime.audio import MAX_WINDOW_SECONDS, SEARCH_SECONDS, read_windows
from espnet_lw.runtime.model import OnnxCtcModel
from espnet_lw.utils.cli import UserError

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".aiff", ".aif", ".au", ".caf", ".w64",
                    ".rf64", ".sph", ".nist")
SCP_FIX = ("convert the audio to files first, e.g. with the recipe's format_wav_scp stage "
           "(python -m espnet_lw.bin.format_wav_scp), and give that wav.scp")


@dataclass
class Utterance:
    uttid: str
    path: str


@dataclass
class Result:
    uttid: str
    text: str
    duration: float  # seconds of audio
    seconds: float  # seconds taken to transcribe it
    path: str

    @property
    def rtf(self) -> float:
        return self.seconds / self.duration if self.duration > 0 else 0.0

    def line(self, jsonl: bool = False) -> str:
        if jsonl:
            return json.dumps({"uttid": self.uttid, "text": self.text, "duration": round(self.duration, 3),
                               "seconds": round(self.seconds, 4), "rtf": round(self.rtf, 5), "path": self.path},
                              ensure_ascii=False)
        return f"{self.uttid} {self.text}".rstrip(" ")


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------
def read_wav_scp(path: str | os.PathLike) -> list[Utterance]:
    """``uttid path`` lines of a Kaldi wav.scp; command entries (``... |``) are a UserError."""
    utts, pipes = [], []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read wav.scp: {e}", str(path)) from e
    for lineno, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise UserError(f"line {lineno}: expected 'uttid path', got {line!r}", str(path))
        uttid, target = parts
        if target.endswith("|"):
            pipes.append(uttid)
            continue
        utts.append(Utterance(uttid, target))
    if pipes:
        more = f" (and {len(pipes) - 1} more)" if len(pipes) > 1 else ""
        raise UserError(f"entry {pipes[0]}{more} is a command ('... |'); transcribe reads audio files only",
                        str(path), SCP_FIX)
    return utts


def _is_scp(path: Path) -> bool:
    return path.suffix == ".scp"


def collect_inputs(inputs: Iterable[str]) -> tuple[list[Utterance], list[UserError]]:
    """Utterances of files, directories and wav.scp files; plus an error for each missing input.

    A uttid seen twice gets ``-2``, ``-3``... appended (with a warning), so every output line
    is a distinct utterance.
    """
    utts: list[Utterance] = []
    errors: list[UserError] = []
    for name in inputs:
        p = Path(name)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS and f.is_file())
            if not found:
                errors.append(UserError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this directory",
                                        name))
            utts.extend(Utterance(f.stem, str(f)) for f in found)
        elif p.is_file() and _is_scp(p):
            try:
                utts.extend(read_wav_scp(p))
            except UserError as e:
                errors.append(e)
        elif p.is_file():
            utts.append(Utterance(p.stem, name))
        else:
            errors.append(UserError("no such file or directory", name))
    seen: dict[str, int] = {}
    for u in utts:
        if u.uttid in seen:
            seen[u.uttid] += 1
            new = f"{u.uttid}-{seen[u.uttid]}"
            logger.warning("uttid %s appears more than once; %s is written as %s", u.uttid, u.path, new)
            u.uttid = new
        else:
            seen[u.uttid] = 1
    return utts, errors


# --------------------------------------------------------------------------
# Transcription
# --------------------------------------------------------------------------
def transcribe_file(model: OnnxCtcModel, path: str, uttid: str | None = None,
                    max_seconds: float = MAX_WINDOW_SECONDS) -> Result:
    """Transcribe one audio file of any length (in windows of at most ``max_seconds``); UserError if unusable."""
    t0 = time.perf_counter()
    texts, samples = [], 0
    search = min(SEARCH_SECONDS, max_seconds / 2)
    for window in read_windows(path, sample_rate=model.sample_rate, max_seconds=max_seconds, search_seconds=search):
        samples += len(window)
        text = model.transcribe_samples(window)
        if text:
            texts.append(text)
    seconds = time.perf_counter() - t0
    return Result(uttid or Path(path).stem, " ".join(texts), samples / model.sample_rate, seconds, str(path))


def iter_results(model: OnnxCtcModel, utts: Iterable[Utterance],
                 max_seconds: float = MAX_WINDOW_SECONDS) -> Iterator[Result | UserError]:
    """A :class:`Result` per utterance, or the :class:`UserError` that stopped it."""
    for u in utts:
        try:
            yield transcribe_file(model, u.path, u.uttid, max_seconds)
        except UserError as e:
            yield e


def transcribe(model: OnnxCtcModel, inputs: Iterable[str], out: TextIO | None = None, jsonl: bool = False,
               err: TextIO | None = None, max_seconds: float = MAX_WINDOW_SECONDS) -> int:
    """Transcribe ``inputs`` (files, directories, wav.scp) to ``out``, one line per utterance.

    Each failure is one ``ERROR:`` line on ``err`` (default stderr); returns how many failed.
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    utts, errors = collect_inputs(inputs)
    for e in errors:
        print("ERROR: " + e.format(), file=err, flush=True)
    failures = len(errors)
    total_audio = total_seconds = 0.0
    for r in iter_results(model, utts, max_seconds):
        if isinstance(r, UserError):
            failures += 1
            print("ERROR: " + r.format(), file=err, flush=True)
            continue
        total_audio += r.duration
        total_seconds += r.seconds
        out.write(r.line(jsonl) + "\n")
        out.flush()
    done = len(utts) + len(errors) - failures
    if total_audio > 0:
        logger.info("%d utterance(s), %.1f s of audio in %.2f s (RTF %.4f)%s", done, total_audio, total_seconds,
                    total_seconds / total_audio, f"; {failures} failed" if failures else "")
    return failures
