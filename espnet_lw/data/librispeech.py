"""Turn a LibriSpeech-layout split directory into a Kaldi-style data directory.

Input (real LibriSpeech, e.g. ``LibriSpeech/dev-clean``, or a mini_synth split)::

    SRC/<speaker>/<chapter>/<speaker>-<chapter>-<NNNN>.flac
    SRC/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   ("<uttid> TEXT" lines)

Output (like ESPnet's / Kaldi's LibriSpeech data preparation)::

    DST/wav.scp      <uttid> <absolute path of the .flac>
    DST/text         <uttid> <TRANSCRIPT>
    DST/utt2spk      <uttid> <speaker>-<chapter>
    DST/spk2utt      <speaker>-<chapter> <uttid> <uttid> ...
    DST/utt2gender   <uttid> m|f      (only when SPEAKERS.TXT gives the sexes)

Every file is sorted by key in C (byte) order with unique keys.  The speaker
key is ``<speaker>-<chapter>`` (one "speaker" per chapter), so each utterance
id starts with its speaker id, as Kaldi requires.

Policy on inconsistencies (all errors name the offending file):

* a transcript line whose ``.flac`` is missing: error;
* a ``.flac`` without a transcript line: error by default; with
  ``skip_untranscribed=True`` (``--skip_untranscribed``) it is skipped with a
  warning (e.g. for a partially downloaded corpus);
* an empty transcript, a malformed line, an utterance id that does not match
  its folder, a duplicate utterance id: error;
* no transcripts at all (empty or wrong directory): error.

The output is written to a temporary sibling directory and renamed into place,
so ``DST`` is either complete or absent.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from espnet_lw.utils.cli import UserError

logger = logging.getLogger(__name__)

KALDI_FILES = ("wav.scp", "text", "utt2spk", "spk2utt")
_UTT_RE = re.compile(r"^(\d+)-(\d+)-(\d+)$")


@dataclass
class Utterance:
    """One utterance found in the split directory."""

    uttid: str
    speaker: str  # "<speaker>-<chapter>"
    reader: str  # "<speaker>" (the LibriSpeech reader id)
    path: str  # absolute FLAC path
    text: str


def _c_sorted(items, key=None):
    """Sort by the UTF-8 bytes of the key (C / LC_ALL=C order)."""
    k = key or (lambda x: x)
    return sorted(items, key=lambda x: k(x).encode("utf-8"))


def read_speakers_txt(path: str | os.PathLike) -> dict[str, str]:
    """Reader id -> sex (``"m"``/``"f"``) from a LibriSpeech ``SPEAKERS.TXT``.

    Lines starting with ``;`` are comments; fields are separated by ``|`` and
    the first two are the reader id and its sex (``M``/``F``).
    """
    genders: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith(";"):
                continue
            fields = [x.strip() for x in line.split("|")]
            if len(fields) < 2 or not fields[0].isdigit() or fields[1].upper() not in ("M", "F"):
                logger.warning("%s:%d: skipping unparsable speaker line: %r", path, lineno, line)
                continue
            genders[fields[0]] = fields[1].lower()
    return genders


def find_speakers_txt(src: Path) -> Path | None:
    """``SPEAKERS.TXT`` next to the split (``LibriSpeech/SPEAKERS.TXT``) or inside it."""
    for cand in (src / "SPEAKERS.TXT", src.parent / "SPEAKERS.TXT"):
        if cand.is_file():
            return cand
    return None


def scan_split(src: str | os.PathLike, skip_untranscribed: bool = False) -> list[Utterance]:
    """Read every ``*.trans.txt`` under ``src`` and check it against the FLAC files."""
    src = Path(src).resolve()
    if not src.is_dir():
        raise UserError("source split directory does not exist", str(src),
                        "pass a LibriSpeech split directory such as LibriSpeech/dev-clean")
    trans_files = _c_sorted(src.glob("*/*/*.trans.txt"), key=str)
    if not trans_files:
        raise UserError("no <speaker>/<chapter>/<speaker>-<chapter>.trans.txt files found", str(src),
                        "pass a LibriSpeech split directory (e.g. LibriSpeech/dev-clean), "
                        "not the LibriSpeech root or an empty/unfinished download")
    utts: dict[str, Utterance] = {}
    for tf in trans_files:
        reader, chapter = tf.parent.parent.name, tf.parent.name
        expected_name = f"{reader}-{chapter}.trans.txt"
        if tf.name != expected_name:
            raise UserError(f"transcript file name does not match its folder (expected {expected_name})",
                            str(tf), "restore the LibriSpeech layout <speaker>/<chapter>/<speaker>-<chapter>.trans.txt")
        with open(tf, encoding="utf-8") as f:
            lines = f.read().splitlines()
        for lineno, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line:
                continue
            uttid, _, text = line.partition(" ")
            text = " ".join(text.split())
            where = f"{tf}:{lineno}"
            m = _UTT_RE.match(uttid)
            if not m:
                raise UserError(f"malformed line (expected '<speaker>-<chapter>-<NNNN> TEXT'): {raw!r}",
                                where, "fix or remove this line")
            if (m.group(1), m.group(2)) != (reader, chapter):
                raise UserError(f"utterance {uttid} does not belong to folder {reader}/{chapter}",
                                where, "move the line to the right chapter's trans.txt")
            if not text:
                raise UserError(f"empty transcript for utterance {uttid}", where,
                                "add the transcript or remove the line (and its audio)")
            if uttid in utts:
                raise UserError(f"duplicate utterance id {uttid}", where, "remove the duplicate line")
            flac = tf.parent / f"{uttid}.flac"
            if not flac.is_file():
                raise UserError(f"audio file for utterance {uttid} is missing: {flac}", where,
                                "restore the .flac file or remove the transcript line")
            if any(c.isspace() for c in str(flac)):
                raise UserError("path contains white space, which Kaldi-style wav.scp cannot hold",
                                str(flac), "move the corpus to a path without spaces")
            utts[uttid] = Utterance(uttid, f"{reader}-{chapter}", reader, str(flac), text)

    untranscribed = [p for p in _c_sorted(src.glob("*/*/*.flac"), key=str) if p.stem not in utts]
    if untranscribed:
        first = untranscribed[0]
        msg = f"{len(untranscribed)} .flac file(s) have no transcript line, e.g. {first.name}"
        trans = first.parent / (first.stem.rsplit("-", 1)[0] + ".trans.txt")
        if not skip_untranscribed:
            raise UserError(msg, str(trans),
                            "add the missing transcript lines, remove the stray audio, "
                            "or pass --skip_untranscribed to ignore it")
        logger.warning("%s: %s; skipping them (--skip_untranscribed)", trans, msg)
    if not utts:
        raise UserError("the transcript files contain no utterances", str(src),
                        "check that the corpus download/extraction finished")
    return _c_sorted(utts.values(), key=lambda u: u.uttid)


def write_data_dir(utts: list[Utterance], dst: str | os.PathLike, genders: dict[str, str] | None = None,
                   overwrite: bool = False) -> Path:
    """Write the Kaldi files for ``utts`` atomically into ``dst``."""
    dst = Path(dst).resolve()
    if dst.exists():
        if not dst.is_dir():
            raise UserError("destination exists and is not a directory", str(dst), "choose another DST")
        if any(dst.iterdir()) and not overwrite:
            raise UserError("destination data directory exists and is not empty", str(dst),
                            "pass --overwrite to replace it, or choose another DST")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp", dir=dst.parent))
    try:
        utts = _c_sorted(utts, key=lambda u: u.uttid)
        spk2utt: dict[str, list[str]] = {}
        for u in utts:
            spk2utt.setdefault(u.speaker, []).append(u.uttid)
        files = {
            "wav.scp": [f"{u.uttid} {u.path}" for u in utts],
            "text": [f"{u.uttid} {u.text}" for u in utts],
            "utt2spk": [f"{u.uttid} {u.speaker}" for u in utts],
            "spk2utt": [f"{s} {' '.join(spk2utt[s])}" for s in _c_sorted(spk2utt)],
        }
        if genders:
            missing = sorted({u.reader for u in utts if u.reader not in genders})
            if missing:
                logger.warning("SPEAKERS.TXT has no sex for reader(s) %s; not writing utt2gender",
                               " ".join(missing[:10]))
            else:
                files["utt2gender"] = [f"{u.uttid} {genders[u.reader]}" for u in utts]
        for name, lines in files.items():
            (tmp / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)
        if dst.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old", dir=dst.parent))
            os.rename(dst, old / dst.name)
            os.rename(tmp, dst)
            shutil.rmtree(old)
        else:
            os.rename(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def prepare(src: str | os.PathLike, dst: str | os.PathLike, overwrite: bool = False,
            skip_untranscribed: bool = False, speakers_txt: str | os.PathLike | None = None) -> dict:
    """Scan ``src`` and write the Kaldi data dir ``dst``; returns small statistics."""
    utts = scan_split(src, skip_untranscribed=skip_untranscribed)
    genders = None
    spk_file = Path(speakers_txt) if speakers_txt else find_speakers_txt(Path(src).resolve())
    if speakers_txt and not spk_file.is_file():
        raise UserError("speaker table not found", str(spk_file), "fix the --speakers_txt path")
    if spk_file is not None:
        genders = read_speakers_txt(spk_file)
    out = write_data_dir(utts, dst, genders=genders, overwrite=overwrite)
    stats = {"utts": len(utts), "speakers": len({u.speaker for u in utts}),
             "readers": len({u.reader for u in utts}), "dst": str(out)}
    logger.info("%s -> %s: %d utterances, %d speakers (chapters) of %d readers%s", src, out,
                stats["utts"], stats["speakers"], stats["readers"],
                "" if genders else " (no SPEAKERS.TXT: no utt2gender)")
    return stats


def is_complete_data_dir(path: str | os.PathLike) -> bool:
    """True if ``path`` holds the four Kaldi files written by :func:`prepare`."""
    return all((Path(path) / f).is_file() for f in KALDI_FILES)
