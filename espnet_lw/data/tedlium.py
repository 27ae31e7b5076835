"""Turn a TED-LIUM set (``<set>/sph/*.sph`` + ``<set>/stm/*.stm``) into a Kaldi-style data directory.

Input layouts (one talk = one ``.sph`` recording + one ``.stm`` transcript)::

    TEDLIUM_release2/{train,dev,test}/{sph,stm}/<talk>.{sph,stm}          (OpenSLR 19)
    TEDLIUM_release-3/legacy/{train,dev,test}/{sph,stm}/<talk>.{sph,stm}  (OpenSLR 51, same format)

Output (the shape of ESPnet's / Kaldi's TED-LIUM data preparation)::

    DST/wav.scp    <talk> sox <abs>.sph -t wav -r 16000 -c 1 -b 16 - |   (or sph2pipe / the plain path)
    DST/segments   <utt> <talk> <start> <end>      (seconds, 2 decimals)
    DST/text       <utt> <transcript>
    DST/utt2spk    <utt> <talk>-<k>                (pseudo-speakers, see below)
    DST/spk2utt    <talk>-<k> <utt> <utt> ...
    DST/reco2dur   <talk> <duration of the recording in seconds>

Utterance ids are ``<talk>-<round(start*100):07d>-<round(end*100):07d>`` (start/end from the stm
line, before any padding), so they start with the talk name and sort by talk, then by time.

STM lines are ``talk channel speaker start end [<label>] transcript...``.  What is done with them:

* ``;;`` comment lines and blank lines are skipped; trailing white space / CR is ignored;
* a line whose transcript contains ``ignore_time_segment_in_scoring`` is dropped (as ESPnet does),
  and so is every ``inter_segment_gap`` line (speaker field), whatever its transcript;
* the optional label (``<o,f0,male>``, ``<F0_M>``...) is the 6th field when it is ``<...>``
  and not a word tag such as ``<unk>`` / ``<sil>``; it is not used;
* transcript normalisation (ESPnet's TED-LIUM recipe): ``{NOISE}``-style tags become
  ``[NOISE]``; ``<sil>`` is removed; pronunciation-variant markers ``word(2)`` lose the
  ``(2)``; a final ``(talk-id)`` token (utterance names at line ends in some train stms) is
  removed; split contractions are joined (``it 's`` -> ``it's``, a token starting with an
  apostrophe is glued to the word before); ``<unk>`` is kept as ``<unk>``; words are lower
  cased (TED-LIUM already is; tags in ``[]``/``<>`` keep their case);
* a line left without any token after that (empty transcript, only ``<sil>``) is dropped;
* a line with ``end <= start`` is dropped with a warning; a segment starting after the end of
  its recording is dropped with a warning; one ending after it is clipped to it;
* two lines with the same utterance id (same talk and times) keep the first (warning);
* the talk field must be the stm file's name (it names the ``.sph``): otherwise an error.

Segments: with ``pad_start``/``pad_end`` (ESPnet pads train by 0.15 s / 0.1 s because its
segmentation is tight) the times are widened and clipped to ``[0, recording duration]``.
Padding never eats into a neighbour: when two padded neighbours (ordered by start) would
overlap and the original segments did not, both are cut at the middle of the original gap;
segments that already overlapped in the stm (both transcripts cover the shared audio) keep
their original times on the overlapping side.  Without padding (dev/test) the stm times are
used unchanged, overlaps included: every line is a scored utterance.

Pseudo-speakers: ESPnet splits each talk into pseudo-speakers of at most 180 s of speech
(Kaldi's ``modify_speaker_info.sh --seconds-per-spk-max 180``), so that per-speaker statistics
(CMVN, i-vectors) stay local.  Here: the talk's utterances in time order are grouped greedily
(a new group starts when the next one would take it past ``max_spk_seconds``), named
``<talk>-<k>`` with ``k`` counted from 1 and zero-padded to the width of the group count.
Utterance ids and speaker ids share the ``<talk>-`` prefix and groups are contiguous in time,
so sorting by utterance id and by speaker id agree (checked).

Errors (each names the file): an stm without its sph and vice versa, a malformed stm line
(fewer than 5 fields, non-numeric times, a talk field that is not the file name), an sph file
that is not NIST SPHERE, an empty set, white space in a path.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from espnet_lw.data.kaldi_dir import (
    atomic_output_dir,
    check_valid_or_raise,
    sort_keys,
    utt2spk_to_spk2utt,
    write_kv,
)
from espnet_lw.utils.cli import UserError

logger = logging.getLogger(__name__)

#: ESPnet/Kaldi TED-LIUM recipes: 0.15 s before / 0.1 s after each train segment.
TRAIN_PAD_START = 0.15
TRAIN_PAD_END = 0.1
#: seconds of speech per pseudo-speaker (Kaldi modify_speaker_info --seconds-per-spk-max 180)
MAX_SPK_SECONDS = 180.0
IGNORE_TAG = "ignore_time_segment_in_scoring"
GAP_SPEAKER = "inter_segment_gap"
#: ``<...>`` tokens that are words of the transcript, not stm labels
WORD_TAGS = {"<unk>", "<sil>", "<s>", "</s>", "<noise>", "<breath>", "<laugh>"}
WAV_CMDS = ("auto", "sph2pipe", "sox", "path")

_VARIANT_RE = re.compile(r"\(\d+\)")
_LABEL_RE = re.compile(r"^<[^<>\s]*>$")
_CURLY_RE = re.compile(r"^\{([^{}\s]+)\}$")


# --------------------------------------------------------------------------------------- SPHERE
def read_sphere_header(path: str | os.PathLike) -> Dict[str, object]:
    """Fields of a NIST SPHERE header (``NIST_1A``): ``{name: int | float | str}``.

    Raises :class:`UserError` naming the file when it is not a SPHERE file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            if len(head) < 16 or head[:8] != b"NIST_1A\n":
                raise UserError("not a NIST SPHERE file (no 'NIST_1A' header)", str(path),
                                "re-extract the corpus; the .sph files must be the original ones")
            try:
                size = int(head[8:16].strip())
            except ValueError:
                raise UserError("malformed SPHERE header size", str(path)) from None
            body = head + f.read(max(0, size - 16))
    except OSError as e:
        raise UserError(f"cannot read ({e.strerror})", str(path)) from None
    fields: Dict[str, object] = {}
    for raw in body[16:].decode("ascii", "replace").splitlines():
        parts = raw.strip().split(None, 2)
        if not parts or parts[0] == "end_head":
            if parts and parts[0] == "end_head":
                break
            continue
        if len(parts) < 3:
            continue
        name, typ, value = parts
        try:
            if typ == "-i":
                fields[name] = int(value)
            elif typ == "-r":
                fields[name] = float(value)
            else:
                fields[name] = value
        except ValueError:
            fields[name] = value
    fields["header_size"] = size
    return fields


def sphere_duration(path: str | os.PathLike) -> Tuple[float, Dict[str, object]]:
    """Duration in seconds (``sample_count / sample_rate``) and the header of a SPHERE file."""
    hdr = read_sphere_header(path)
    rate = hdr.get("sample_rate")
    count = hdr.get("sample_count")
    if not isinstance(rate, int) or rate <= 0:
        raise UserError("SPHERE header has no valid sample_rate", str(path))
    if not isinstance(count, int):
        # derive it from the file size for uncompressed PCM
        nbytes = os.path.getsize(path) - int(hdr["header_size"])
        width = int(hdr.get("sample_n_bytes", 2)) * int(hdr.get("channel_count", 1))
        if "shorten" in str(hdr.get("sample_coding", "")) or width <= 0:
            raise UserError("SPHERE header has no sample_count", str(path))
        count = nbytes // width
    return count / rate, hdr


# --------------------------------------------------------------------------------------- stm text
def is_label(token: str) -> bool:
    """True for an stm label field such as ``<o,f0,male>`` or ``<F0_M>`` (not ``<unk>``)."""
    return bool(_LABEL_RE.match(token)) and token.lower() not in WORD_TAGS


def normalize_transcript(tokens: List[str]) -> List[str]:
    """Apply the TED-LIUM transcript normalisation described in the module docstring."""
    toks = list(tokens)
    # a trailing "(utterance-name)" token (release-1-style train stms)
    if toks and toks[-1].startswith("(") and toks[-1].endswith(")") and not _VARIANT_RE.fullmatch(toks[-1]):
        toks = toks[:-1]
    out: List[str] = []
    for tok in toks:
        tok = _VARIANT_RE.sub("", tok)
        if not tok or tok.lower() == "<sil>":
            continue
        m = _CURLY_RE.match(tok)
        if m:
            tok = f"[{m.group(1)}]"
        elif tok.startswith("[") and tok.endswith("]") or tok.startswith("<") and tok.endswith(">"):
            pass  # tags keep their case
        else:
            tok = tok.lower()
        out.append(tok)
    # join split contractions: "it 's" -> "it's" (one suffix per word, as ESPnet does)
    joined: List[str] = []
    i = 0
    while i < len(out):
        if i + 1 < len(out) and out[i + 1].startswith("'"):
            joined.append(out[i] + out[i + 1])
            i += 2
        else:
            joined.append(out[i])
            i += 1
    return joined


@dataclass
class StmLine:
    """One kept stm line."""

    talk: str
    start: float
    end: float
    words: List[str]
    where: str  # "file:line"

    @property
    def uttid(self) -> str:
        return f"{self.talk}-{int(round(self.start * 100)):07d}-{int(round(self.end * 100)):07d}"


@dataclass
class StmStats:
    """What happened to the stm lines of a set."""

    lines: int = 0
    comments: int = 0
    ignored: int = 0  # ignore_time_segment_in_scoring / inter_segment_gap
    empty: int = 0
    bad_times: int = 0
    duplicates: int = 0
    past_end: int = 0
    clipped: int = 0
    kept: int = 0
    warnings: List[str] = field(default_factory=list)

    def warn(self, msg: str, limit: int = 10) -> None:
        if len(self.warnings) < limit:
            logger.warning(msg)
        self.warnings.append(msg)


def parse_stm(path: str | os.PathLike, stats: Optional[StmStats] = None) -> List[StmLine]:
    """Read one talk's ``.stm`` file and return its kept lines (file order)."""
    path = Path(path)
    stats = stats if stats is not None else StmStats()
    talk = path.stem
    try:
        raw = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"not valid UTF-8 (byte offset {e.start})", str(path)) from None
    out: List[StmLine] = []
    for lineno, line in enumerate(raw.splitlines(), 1):
        line = line.strip()
        where = f"{path}:{lineno}"
        if not line:
            continue
        if line.startswith(";;"):
            stats.comments += 1
            continue
        stats.lines += 1
        fields = line.split()
        if len(fields) < 5:
            raise UserError(f"malformed stm line (expected 'talk channel speaker start end [<label>] "
                            f"transcript'): {line!r}", where, "fix or remove this line")
        if fields[0] != talk:
            raise UserError(f"talk field '{fields[0]}' does not match the file name '{talk}'", where,
                            "each <talk>.stm must hold the lines of <talk>.sph only")
        try:
            start, end = float(fields[3]), float(fields[4])
        except ValueError:
            raise UserError(f"start/end times are not numbers: {fields[3]!r} {fields[4]!r}", where,
                            "fix or remove this line") from None
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0:
            raise UserError(f"invalid start/end times: {fields[3]} {fields[4]}", where, "fix or remove this line")
        rest = fields[5:]
        if rest and is_label(rest[0]):
            rest = rest[1:]
        if fields[2] == GAP_SPEAKER or IGNORE_TAG in rest:
            stats.ignored += 1
            continue
        if end <= start:
            stats.bad_times += 1
            stats.warn(f"{where}: end time {fields[4]} is not after start time {fields[3]}: line dropped")
            continue
        words = normalize_transcript(rest)
        if not words:
            stats.empty += 1
            continue
        out.append(StmLine(talk, start, end, words, where))
    return out


# --------------------------------------------------------------------------------------- segments
def pad_segments(lines: List[StmLine], duration: float, pad_start: float, pad_end: float
                 ) -> List[Tuple[float, float]]:
    """Padded ``(start, end)`` of ``lines`` (sorted by start), clipped to ``[0, duration]``."""
    n = len(lines)
    starts = [max(0.0, ln.start - pad_start) for ln in lines]
    ends = [min(duration, ln.end + pad_end) for ln in lines]
    for i in range(n - 1):
        a, b = lines[i], lines[i + 1]
        if ends[i] <= starts[i + 1]:
            continue
        if a.end <= b.start:  # the padding made them overlap: meet in the middle of the gap
            mid = round(0.5 * (a.end + b.start), 2)
            ends[i] = max(min(ends[i], mid), a.end)
            starts[i + 1] = min(max(starts[i + 1], mid), b.start)
        else:  # they overlapped already: no padding on the overlapping side
            ends[i] = min(ends[i], a.end)
            starts[i + 1] = max(starts[i + 1], b.start)
    return list(zip(starts, ends))


def group_speakers(talk: str, utts: List[Tuple[str, float]], max_seconds: float) -> Dict[str, str]:
    """``{utt: '<talk>-<k>'}``: consecutive utterances grouped into at most ``max_seconds``."""
    groups: List[List[str]] = []
    cur: List[str] = []
    cur_dur = 0.0
    for utt, dur in utts:
        if cur and max_seconds > 0 and cur_dur + dur > max_seconds:
            groups.append(cur)
            cur, cur_dur = [], 0.0
        cur.append(utt)
        cur_dur += dur
    if cur:
        groups.append(cur)
    width = len(str(len(groups)))
    return {utt: f"{talk}-{k + 1:0{width}d}" for k, g in enumerate(groups) for utt in g}


def wav_entry(sph: Path, how: str, fs: int = 16000) -> str:
    """The ``wav.scp`` value for one talk."""
    if how == "sph2pipe":
        return f"sph2pipe -f wav -p {sph} |"
    if how == "sox":
        return f"sox -t sph {sph} -t wav -r {fs} -c 1 -b 16 - |"
    return str(sph)


def resolve_wav_cmd(how: str) -> str:
    """Turn ``auto`` into ``sph2pipe`` (when on PATH), else ``sox`` (when on PATH), else ``path``."""
    if how not in WAV_CMDS:
        raise UserError(f"unknown --wav_cmd '{how}' (choose from {', '.join(WAV_CMDS)})")
    if how == "auto":
        if shutil.which("sph2pipe"):
            return "sph2pipe"
        if shutil.which("sox"):
            return "sox"
        return "path"
    if how in ("sph2pipe", "sox") and not shutil.which(how):
        raise UserError(f"--wav_cmd {how}: '{how}' is not on PATH", None,
                        "install it, or use --wav_cmd auto (soundfile reads uncompressed SPHERE directly)")
    return how


# --------------------------------------------------------------------------------------- the set
def find_talks(set_dir: Path) -> Dict[str, Tuple[Path, Path]]:
    """``{talk: (sph, stm)}`` of a ``<set>/{sph,stm}`` directory; errors on unmatched files."""
    sph_dir, stm_dir = set_dir / "sph", set_dir / "stm"
    for d in (sph_dir, stm_dir):
        if not d.is_dir():
            raise UserError(f"missing directory {d.name}/ (a TED-LIUM set holds sph/ and stm/)", str(d),
                            "pass a set directory such as TEDLIUM_release2/dev or TEDLIUM_release-3/legacy/dev")
    sphs = {p.stem: p for p in sph_dir.glob("*.sph")}
    stms = {p.stem: p for p in stm_dir.glob("*.stm")}
    if not stms:
        raise UserError("no .stm files", str(stm_dir), "check that the corpus extraction finished")
    for talk in sort_keys(set(stms) - set(sphs)):
        raise UserError(f"talk '{talk}' has a transcript but no audio ({sph_dir / (talk + '.sph')} is missing)",
                        str(stms[talk]), "restore the .sph file or remove the .stm")
    for talk in sort_keys(set(sphs) - set(stms)):
        raise UserError(f"talk '{talk}' has audio but no transcript ({stm_dir / (talk + '.stm')} is missing)",
                        str(sphs[talk]), "restore the .stm file or remove the .sph")
    for talk, p in list(sphs.items()) + list(stms.items()):
        if any(c.isspace() for c in str(p)) or any(c.isspace() for c in talk):
            raise UserError("path contains white space, which Kaldi-style tables cannot hold", str(p),
                            "move the corpus to a path without spaces")
    return {t: (sphs[t], stms[t]) for t in sort_keys(stms)}


def prepare(set_dir: str | os.PathLike, dst: str | os.PathLike, pad_start: float = 0.0, pad_end: float = 0.0,
            max_spk_seconds: float = MAX_SPK_SECONDS, wav_cmd: str = "auto", fs: int = 16000,
            overwrite: bool = False) -> dict:
    """Write the Kaldi data dir ``dst`` for the TED-LIUM set ``set_dir``; return statistics."""
    set_dir = Path(set_dir).resolve()
    if not set_dir.is_dir():
        raise UserError("TED-LIUM set directory does not exist", str(set_dir),
                        "pass e.g. TEDLIUM_release2/train (it must contain sph/ and stm/)")
    if pad_start < 0 or pad_end < 0:
        raise UserError("padding must not be negative")
    how = resolve_wav_cmd(wav_cmd)
    talks = find_talks(set_dir)
    stats = StmStats()
    wav: Dict[str, str] = {}
    reco2dur: Dict[str, str] = {}
    segments: Dict[str, str] = {}
    text: Dict[str, str] = {}
    utt2spk: Dict[str, str] = {}
    total = 0.0
    for talk, (sph, stm) in talks.items():
        dur, hdr = sphere_duration(sph)
        if "shorten" in str(hdr.get("sample_coding", "")) and how != "sph2pipe":
            raise UserError("shorten-compressed SPHERE: only sph2pipe decodes it", str(sph),
                            "install sph2pipe (then --wav_cmd auto picks it)")
        lines = sorted(parse_stm(stm, stats), key=lambda ln: (ln.start, ln.end))
        kept: List[StmLine] = []
        seen: Dict[str, str] = {}
        for ln in lines:
            if ln.uttid in seen:
                stats.duplicates += 1
                stats.warn(f"{ln.where}: same talk and times as {seen[ln.uttid]} (id {ln.uttid}): kept the first")
                continue
            if ln.start >= dur:
                stats.past_end += 1
                stats.warn(f"{ln.where}: starts at {ln.start:g}s, after the end of {sph.name} ({dur:.2f}s): dropped")
                continue
            if ln.end > dur:
                stats.clipped += 1
                if ln.end > dur + 0.5:
                    stats.warn(f"{ln.where}: ends at {ln.end:g}s, after the end of {sph.name} ({dur:.2f}s): clipped")
            seen[ln.uttid] = ln.where
            kept.append(ln)
        if not kept:
            logger.warning("%s: no usable line: talk %s left out", stm, talk)
            continue
        times = pad_segments(kept, dur, pad_start, pad_end)
        durs = []
        for ln, (s, e) in zip(kept, times):
            s_txt, e_txt = f"{s:.2f}", f"{e:.2f}"
            if float(e_txt) <= float(s_txt):
                stats.bad_times += 1
                stats.warn(f"{ln.where}: shorter than 10 ms after clipping to the recording: dropped")
                continue
            segments[ln.uttid] = f"{talk} {s_txt} {e_txt}"
            text[ln.uttid] = " ".join(ln.words)
            durs.append((ln.uttid, e - s))
            total += e - s
        if not durs:
            continue
        utt2spk.update(group_speakers(talk, durs, max_spk_seconds))
        wav[talk] = wav_entry(sph, how, fs)
        reco2dur[talk] = f"{dur:.3f}"
        stats.kept += len(durs)
    if not text:
        raise UserError("no utterance left after reading the stm files", str(set_dir / "stm"))

    # utterances sorted by id must be grouped by speaker (Kaldi's sort-order rule)
    order = sort_keys(utt2spk)
    spk_seq = [utt2spk[u] for u in order]
    if spk_seq != sorted(spk_seq, key=lambda s: s.encode("utf-8")):
        raise UserError("utterance ids do not sort in speaker order (unusual talk names?)", str(set_dir))

    with atomic_output_dir(dst, overwrite=overwrite) as tmp:
        write_kv(tmp / "wav.scp", wav)
        write_kv(tmp / "reco2dur", reco2dur)
        write_kv(tmp / "segments", segments)
        write_kv(tmp / "text", text)
        write_kv(tmp / "utt2spk", utt2spk)
        write_kv(tmp / "spk2utt", utt2spk_to_spk2utt(utt2spk))
        check_valid_or_raise(tmp)
    result = {
        "talks": len(wav), "utts": len(text), "speakers": len(set(utt2spk.values())), "hours": total / 3600,
        "ignored": stats.ignored, "empty": stats.empty, "bad_times": stats.bad_times,
        "duplicates": stats.duplicates, "past_end": stats.past_end, "clipped": stats.clipped,
        "comments": stats.comments, "wav_cmd": how, "dst": str(dst),
    }
    logger.info(
        "%s -> %s: %d talks, %d utterances (%.2f h), %d pseudo-speakers; dropped %d ignore/gap, %d empty, "
        "%d bad-time, %d duplicate, %d past-end lines; clipped %d; wav.scp via %s",
        set_dir, dst, result["talks"], result["utts"], result["hours"], result["speakers"], stats.ignored,
        stats.empty, stats.bad_times, stats.duplicates, stats.past_end, stats.clipped, how)
    return result
