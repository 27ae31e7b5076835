"""Bring your own field data: audio + transcripts -> a checked Kaldi data dir (``data/<name>``).

Three inputs:

* a manifest: one utterance a line, ``audio_path<TAB>transcript`` or
  ``audio_path<TAB>transcript<TAB>speaker``; relative audio paths are relative to the manifest's
  folder; blank lines and lines starting with ``#`` are skipped;
* a directory in LibriSpeech layout (``<spk>/<chapter>/<spk>-<chapter>-<n>.flac`` + ``*.trans.txt``);
* a Kaldi data dir (``wav.scp``, ``text``, ``utt2spk``; ``spk2utt`` is made when missing).

Speakers (``utt2spk``) of a manifest: the third column when there is one; otherwise ``--speaker
dir`` takes the audio file's folder name, ``--speaker utt`` (the default) makes every utterance
its own speaker (Kaldi's convention when speakers are unknown). Utterance ids are
``<speaker>-<file stem>`` (so they sort with their speaker, as Kaldi wants).

Every problem names the file and the line: a missing or empty audio file, an empty transcript, a
line without a tab, a duplicate utterance. The result is then checked with the stage 1 validator
(:func:`espnet_lw.data.kaldi_dir.validate_data_dir`). With ``test_share`` the data are split by
speaker into ``<name>_adapt`` and ``<name>_test`` (no speaker in both; LibriSpeech readers, not
chapters, are the unit).
"""

from __future__ import annotations

import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from espnet_lw.data import librispeech
from espnet_lw.data.kaldi_dir import (
    atomic_output_dir,
    read_kv,
    read_kv_lines,
    spk2utt_to_utt2spk,
    utt2spk_to_spk2utt,
    validate_data_dir,
    write_kv,
)
from espnet_lw.utils.cli import UserError

PathLike = Union[str, Path]
SPEAKER_MODES = ("utt", "dir")
TEXT_CASES = ("keep", "upper", "lower")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class Utt:
    uttid: str
    speaker: str
    audio: str
    text: str


def _safe_id(s: str) -> str:
    return _ID_UNSAFE.sub("_", s).strip("_") or "x"


def _case(text: str, text_case: str) -> str:
    return text.upper() if text_case == "upper" else text.lower() if text_case == "lower" else text


def read_manifest(path: PathLike, speaker: str = "utt", text_case: str = "keep") -> List[Utt]:
    """Parse a manifest (see the module docstring); a UserError names the line of any problem."""
    path = Path(path)
    if not path.is_file():
        raise UserError("manifest not found", str(path))
    base = path.resolve().parent
    utts: List[Utt] = []
    seen: Dict[str, int] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise UserError(f"not valid UTF-8 (byte offset {e.start})", str(path)) from None
    for lineno, raw in enumerate(lines, 1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{lineno}"
        cols = line.split("\t")
        if len(cols) not in (2, 3):
            raise UserError(f"expected 'audio_path<TAB>transcript[<TAB>speaker]', got {len(cols)} "
                            f"tab-separated column(s): {line[:80]!r}", where,
                            "separate the columns with one tab (the transcript may contain spaces)")
        audio_s, text = cols[0].strip(), " ".join(cols[1].split())
        if not audio_s:
            raise UserError("empty audio path", where)
        audio = Path(audio_s) if Path(audio_s).is_absolute() else base / audio_s
        if not audio.is_file():
            raise UserError(f"audio file not found: {audio}", where)
        if audio.stat().st_size == 0:
            raise UserError(f"audio file is empty: {audio}", where)
        if not text:
            raise UserError(f"empty transcript for {audio_s}", where,
                            "give every utterance its transcript, or leave the line out")
        if len(cols) == 3:
            spk = _safe_id(cols[2].strip())
            if not cols[2].strip():
                raise UserError("empty speaker column", where)
        elif speaker == "dir":
            spk = _safe_id(audio.parent.name)
        else:
            spk = None
        stem = _safe_id(audio.stem)
        uttid = f"{spk}-{stem}" if spk else stem
        if uttid in seen:
            raise UserError(f"duplicate utterance '{uttid}' (also line {seen[uttid]}): two audio files with the "
                            "same name and speaker", where, "rename one of them")
        seen[uttid] = lineno
        utts.append(Utt(uttid, spk or uttid, str(audio.resolve()), _case(text, text_case)))
    if not utts:
        raise UserError("the manifest lists no utterances", str(path))
    return utts


def _write_utts(utts: Sequence[Utt], dst: Path) -> None:
    write_kv(dst / "wav.scp", {u.uttid: u.audio for u in utts})
    write_kv(dst / "text", {u.uttid: u.text for u in utts})
    utt2spk = {u.uttid: u.speaker for u in utts}
    write_kv(dst / "utt2spk", utt2spk)
    write_kv(dst / "spk2utt", utt2spk_to_spk2utt(utt2spk))


def check_kaldi_dir(src: Path) -> None:
    """Problems of a Kaldi dir the validator does not name with their line: missing audio, empty text."""
    for name in ("wav.scp", "text", "utt2spk"):
        if not (src / name).is_file():
            raise UserError(f"{name} is missing: not a Kaldi data dir", str(src / name))
    for line in read_kv_lines(src / "wav.scp"):
        if not line.key:
            continue
        value = line.value.strip()
        if not value:
            raise UserError(f"line {line.lineno}: no audio for utterance '{line.key}'", str(src / "wav.scp"))
        if not value.endswith("|"):  # a command ("sox ... |") cannot be checked here; stage 3 runs it
            audio = Path(value) if Path(value).is_absolute() else Path.cwd() / value
            if not audio.is_file():
                raise UserError(f"line {line.lineno}: audio file not found: {value} (utterance '{line.key}')",
                                str(src / "wav.scp"))
    for line in read_kv_lines(src / "text"):
        if line.key and not line.value.strip():
            raise UserError(f"line {line.lineno}: empty transcript for utterance '{line.key}'", str(src / "text"))


def split_by_speaker(utt2spk: Dict[str, str], test_share: float, seed: int = 0,
                     group=lambda spk: spk) -> Tuple[List[str], List[str]]:
    """(adapt utterances, test utterances), disjoint by speaker group; about ``test_share`` of the
    groups go to test (at least one each side)."""
    groups = sorted({group(s) for s in utt2spk.values()})
    if len(groups) < 2:
        raise UserError(f"cannot split by speaker: only {len(groups)} speaker(s)",
                        fix="give a speaker column / --speaker dir, or split the data yourself")
    rng = random.Random(seed)
    rng.shuffle(groups)
    n_test = min(max(1, round(test_share * len(groups))), len(groups) - 1)
    test_groups = set(groups[:n_test])
    adapt = sorted(u for u, s in utt2spk.items() if group(s) not in test_groups)
    test = sorted(u for u, s in utt2spk.items() if group(s) in test_groups)
    return adapt, test


def _subset_dir(src: Path, dst: Path, utts: Sequence[str], overwrite: bool) -> None:
    keep = set(utts)
    with atomic_output_dir(dst, overwrite=overwrite) as tmp:
        for name in ("wav.scp", "text", "utt2spk", "utt2gender"):
            if (src / name).is_file():
                write_kv(tmp / name, {k: v for k, v in read_kv(src / name).items() if k in keep})
        write_kv(tmp / "spk2utt", utt2spk_to_spk2utt(read_kv(tmp / "utt2spk")))


def import_field_data(
    dst: PathLike,
    *,
    manifest: Optional[PathLike] = None,
    librispeech_dir: Optional[PathLike] = None,
    kaldi_dir: Optional[PathLike] = None,
    speaker: str = "utt",
    text_case: str = "keep",
    test_share: Optional[float] = None,
    seed: int = 0,
    overwrite: bool = False,
) -> List[Path]:
    """Write ``dst`` (and with ``test_share`` ``dst_adapt`` + ``dst_test``); returns the dirs written."""
    if sum(x is not None for x in (manifest, librispeech_dir, kaldi_dir)) != 1:
        raise UserError("give exactly one of a manifest, a LibriSpeech-layout dir or a Kaldi data dir")
    dst = Path(dst)
    if speaker not in SPEAKER_MODES or text_case not in TEXT_CASES:
        raise UserError(f"speaker must be one of {SPEAKER_MODES}, text_case one of {TEXT_CASES}")
    if manifest is not None:
        utts = read_manifest(manifest, speaker=speaker, text_case=text_case)
        with atomic_output_dir(dst, overwrite=overwrite) as tmp:
            _write_utts(utts, tmp)
    elif librispeech_dir is not None:
        librispeech.prepare(librispeech_dir, dst, overwrite=overwrite)
    else:
        src = Path(kaldi_dir)
        check_kaldi_dir(src)
        with atomic_output_dir(dst, overwrite=overwrite) as tmp:
            for f in src.iterdir():
                if f.is_file() and not f.name.startswith("."):
                    shutil.copy2(f, tmp / f.name)
            if not (tmp / "spk2utt").is_file():
                write_kv(tmp / "spk2utt", utt2spk_to_spk2utt(read_kv(tmp / "utt2spk")))
            elif not (tmp / "utt2spk").is_file():
                write_kv(tmp / "utt2spk", spk2utt_to_utt2spk(read_kv(tmp / "spk2utt")))
            if text_case != "keep":
                write_kv(tmp / "text", {k: _case(v, text_case) for k, v in read_kv(tmp / "text").items()})
    check_kaldi_dir(dst)
    problems = validate_data_dir(dst)
    if problems:
        raise UserError("invalid data directory:\n  " + "\n  ".join(problems[:8]), str(dst),
                        f"fix the input, or run: python -m espnet_lw.bin.validate_data_dir --fix {dst}")
    written = [dst]
    if test_share is not None:
        if not 0.0 < test_share < 1.0:
            raise UserError(f"the test share must be in (0, 1), got {test_share}")
        group = (lambda s: s.split("-")[0]) if librispeech_dir is not None else (lambda s: s)
        adapt, test = split_by_speaker(read_kv(dst / "utt2spk"), test_share, seed, group)
        for suffix, keys in (("adapt", adapt), ("test", test)):
            out = dst.parent / f"{dst.name}_{suffix}"
            _subset_dir(dst, out, keys, overwrite)
            written.append(out)
    return written
