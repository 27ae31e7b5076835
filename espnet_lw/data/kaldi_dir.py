"""Read, write, check and repair Kaldi-style data directories.

A Kaldi data directory is a folder of small "table" files.  Every line of a
table is ``<key> <value>``: the key is the first whitespace-delimited token
and the value is the rest of the line (it may be empty, e.g. an empty
transcript in ``text``).  The files understood here are

==========================  ===============================================
keyed by utterance id       ``text``, ``text.*``, ``utt2spk``, ``utt2*``
                            (``utt2num_samples``, ``utt2dur``, ...),
                            ``segments``, ``feats.scp``
keyed by speaker id         ``spk2utt`` (derived from ``utt2spk``),
                            ``spk2*`` (``spk2gender``...), ``cmvn.scp``
keyed by recording id       ``wav.scp``, ``reco2*`` (``reco2dur``...) when a
                            ``segments`` file exists; otherwise recording
                            id == utterance id and they are keyed by
                            utterance
==========================  ===============================================

Any other file (``feats_type``, ``audio_format``, ``removed.txt``...) is not a
table and is left alone.

Conventions used throughout:

* tables are written sorted by key in C / byte order (what ``LC_ALL=C sort``
  gives; for UTF-8 text byte order equals code-point order, which is what
  Python's ``sorted`` uses on ``str``);
* every write is atomic: the content goes to a temporary file in the same
  directory which is then ``os.replace``-d onto the target, so a reader never
  sees a half-written table;
* whole output directories are produced with :func:`atomic_output_dir`, which
  builds them under a hidden temporary name and renames them at the end.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Union

from espnet_lw.utils.cli import UserError
from espnet_lw.utils.io import atomic_write_text, current_umask  # noqa: F401 - atomic_write_text: re-exported

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

# key = first run of non-blank characters, value = the rest minus the blanks
# around it.  Only ASCII space and tab separate fields (as in Kaldi), so a
# non-breaking or ideographic space inside a transcript stays in the value.
_LINE_RE = re.compile(r"^[ \t]*([^ \t]+)(?:[ \t]+(.*?))?[ \t]*$")

#: Tolerance (seconds) when comparing segment end times to recording length.
SEGMENT_END_TOLERANCE = 0.01


class KVLine(NamedTuple):
    """One line of a table file: 1-based line number, key, value.

    A blank line is represented with ``key == ""``.
    """

    lineno: int
    key: str
    value: str


# --------------------------------------------------------------------------
# reading / writing single tables
# --------------------------------------------------------------------------
def read_kv_lines(path: PathLike) -> List[KVLine]:
    """Return every line of ``path`` as a :class:`KVLine`, blank lines included.

    Duplicates and ordering are preserved so that callers (the validator) can
    report them.  Raises :class:`UserError` if the file is missing or is not
    UTF-8.
    """
    path = Path(path)
    out: List[KVLine] = []
    try:
        with open(path, encoding="utf-8", newline="\n") as f:
            for lineno, raw in enumerate(f, 1):
                line = raw.rstrip("\n").rstrip("\r")
                m = _LINE_RE.match(line)
                if m is None:  # only blanks on the line
                    out.append(KVLine(lineno, "", ""))
                else:
                    out.append(KVLine(lineno, m.group(1), m.group(2) or ""))
    except FileNotFoundError:
        raise UserError("file not found", str(path)) from None
    except UnicodeDecodeError as e:
        raise UserError(
            f"not valid UTF-8 (byte offset {e.start})",
            str(path),
            "re-encode the file as UTF-8 (e.g. iconv -f <enc> -t utf-8)",
        ) from None
    return out


def read_kv(path: PathLike, allow_duplicates: bool = False) -> "OrderedDict[str, str]":
    """Read a table into an ordered ``{key: value}`` dict (file order).

    The value is the rest of the line after the key with surrounding blanks
    removed; a key alone on its line gives ``""`` so an empty transcript is
    still detectable.  Blank lines are skipped.  A key that appears twice is a
    :class:`UserError` unless ``allow_duplicates`` (then the first one wins).
    """
    result: "OrderedDict[str, str]" = OrderedDict()
    first_line: Dict[str, int] = {}
    for ln in read_kv_lines(path):
        if not ln.key:
            continue
        if ln.key in result:
            if allow_duplicates:
                continue
            raise UserError(
                f"duplicate key '{ln.key}' on lines {first_line[ln.key]} and {ln.lineno}",
                str(path),
                f"run: python -m espnet_lw.bin.validate_data_dir --fix {Path(path).parent}",
            )
        result[ln.key] = ln.value
        first_line[ln.key] = ln.lineno
    return result


def _byte_order(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


def sort_keys(keys: Iterable[str]) -> List[str]:
    """Sort keys in C / byte order (same as ``LC_ALL=C sort``)."""
    return sorted(keys, key=_byte_order)


def _format_value(value) -> str:
    if isinstance(value, (list, tuple)):
        value = " ".join(str(v) for v in value)
    return str(value)


def write_kv(path: PathLike, table: Mapping[str, object], sort: bool = True) -> None:
    """Write ``table`` as ``key value`` lines, sorted in C order, atomically.

    Values may be strings or lists (joined with single spaces).  An empty
    value is written as the key alone.  Keys must be non-empty and free of
    whitespace; values must not contain newlines (``ValueError`` otherwise,
    since that is a programming error rather than bad user input).
    """
    keys = sort_keys(table) if sort else list(table)
    lines = []
    for k in keys:
        if not k or any(c in k for c in " \t\n\r"):
            raise ValueError(f"invalid key {k!r} for {path}")
        v = _format_value(table[k])
        if "\n" in v or "\r" in v:
            raise ValueError(f"value for key {k!r} in {path} contains a newline")
        lines.append(f"{k} {v}\n" if v else f"{k}\n")
    atomic_write_text(path, "".join(lines))



# --------------------------------------------------------------------------
# speakers
# --------------------------------------------------------------------------
def utt2spk_to_spk2utt(utt2spk: Mapping[str, str]) -> "OrderedDict[str, List[str]]":
    """Invert ``utt2spk``: ``{spk: [utt, ...]}`` with speakers and utterances in C order."""
    groups: Dict[str, List[str]] = {}
    for utt, spk in utt2spk.items():
        groups.setdefault(spk, []).append(utt)
    return OrderedDict((spk, sort_keys(groups[spk])) for spk in sort_keys(groups))


def spk2utt_to_utt2spk(spk2utt: Mapping[str, object]) -> "OrderedDict[str, str]":
    """Invert ``spk2utt`` (values as lists or space-separated strings) into ``utt2spk``."""
    out: Dict[str, str] = {}
    for spk, utts in spk2utt.items():
        for utt in utts.split() if isinstance(utts, str) else utts:
            out[utt] = spk
    return OrderedDict((u, out[u]) for u in sort_keys(out))


# --------------------------------------------------------------------------
# which file is keyed by what
# --------------------------------------------------------------------------
UTT, SPK, RECO = "utt", "spk", "reco"


def table_kind(name: str, has_segments: bool) -> Optional[str]:
    """Return what the keys of data-dir file ``name`` are: ``"utt"``, ``"spk"``, ``"reco"``.

    ``None`` means "not a table we know" (left untouched by the tools).
    Without a ``segments`` file recordings are utterances, so recording-keyed
    files are reported as ``"utt"``.
    """
    if name.startswith(".") or name.endswith((".tmp", ".bak", "~")):
        return None
    if name == "spk2utt":
        return SPK
    if name.startswith("spk2") or name == "cmvn.scp":
        return SPK
    if name in ("wav.scp", "reco2file_and_channel") or name.startswith("reco2"):
        return RECO if has_segments else UTT
    if name in ("text", "utt2spk", "segments", "feats.scp") or name.startswith(("utt2", "text.", "text_")):
        return UTT
    return None


def list_tables(data_dir: PathLike) -> Dict[str, str]:
    """Map every table file in ``data_dir`` to its kind (see :func:`table_kind`)."""
    d = Path(data_dir)
    has_segments = (d / "segments").is_file()
    out = {}
    for name in sorted(os.listdir(d)):
        if not (d / name).is_file():
            continue
        kind = table_kind(name, has_segments)
        if kind is not None:
            out[name] = kind
    return out


# --------------------------------------------------------------------------
# segments
# --------------------------------------------------------------------------
@dataclass
class Segment:
    """One ``segments`` line: ``<utt> <reco> <start> <end>`` (seconds)."""

    reco: str
    start: float
    end: float


def parse_segment(value: str) -> Segment:
    """Parse the value part of a ``segments`` line; ``ValueError`` with a reason if bad."""
    fields = value.split()
    if len(fields) != 3:
        raise ValueError(f"expected '<recording> <start> <end>', got {value!r}")
    try:
        start, end = float(fields[1]), float(fields[2])
    except ValueError:
        raise ValueError(f"start/end are not numbers: {value!r}") from None
    if not (start >= 0.0):
        raise ValueError(f"negative or invalid start time {fields[1]}")
    if not (end > start):
        raise ValueError(f"end time {fields[2]} is not after start time {fields[1]}")
    return Segment(fields[0], start, end)


def _segment_problem(value: str, recos: Optional[set], reco2dur: Mapping[str, str]) -> Optional[str]:
    try:
        seg = parse_segment(value)
    except ValueError as e:
        return f"bad segment times: {e}"
    if recos is not None and seg.reco not in recos:
        return f"unknown recording: '{seg.reco}' is not in wav.scp"
    if seg.reco in reco2dur:
        try:
            dur = float(reco2dur[seg.reco])
        except ValueError:
            return None  # reported when reco2dur itself is checked
        if seg.end > dur + SEGMENT_END_TOLERANCE:
            return (
                f"segment past the end of its recording: ends at {seg.end:g}s "
                f"but '{seg.reco}' lasts {dur:g}s (reco2dur)"
            )
    return None


# --------------------------------------------------------------------------
# transcripts: letter case, carriage returns
# --------------------------------------------------------------------------
#: tags such as <unk>, <noise>, [laughter] do not count for a transcript's case
_TAG_RE = re.compile(r"<[^<>\s]*>|\[[^\[\]\s]*\]")
CASES = ("upper", "lower")


def transcript_case(value: str) -> Optional[str]:
    """``"upper"``, ``"lower"``, ``"mixed"`` or ``None`` (no cased letter) for one transcript, tags ignored."""
    letters = _TAG_RE.sub(" ", value)
    up = any(c.isupper() for c in letters)
    lo = any(c.islower() for c in letters)
    return "mixed" if up and lo else "upper" if up else "lower" if lo else None


def text_cases(text: Mapping[str, str]) -> Dict[str, List[str]]:
    """``{case: [utterance ids]}`` over a ``text`` table (see :func:`transcript_case`)."""
    out: Dict[str, List[str]] = {}
    for utt, value in text.items():
        case = transcript_case(value)
        if case is not None:
            out.setdefault(case, []).append(utt)
    return out


def dominant_case(data_dir: PathLike) -> Optional[str]:
    """The case most transcripts of ``data_dir/text`` are in (``None`` without text or cased letters)."""
    path = Path(data_dir) / "text"
    if not path.is_file():
        return None
    cases = text_cases(read_kv(path, allow_duplicates=True))
    return max(cases, key=lambda c: len(cases[c])) if cases else None


def apply_case(value: str, case: str) -> str:
    """``value`` in ``case`` (``upper`` / ``lower``), tags such as ``<unk>`` kept as they are."""
    out, pos = [], 0
    for m in _TAG_RE.finditer(value):
        seg = value[pos:m.start()]
        out.append(seg.upper() if case == "upper" else seg.lower())
        out.append(m.group(0))
        pos = m.end()
    seg = value[pos:]
    out.append(seg.upper() if case == "upper" else seg.lower())
    return "".join(out)


def count_carriage_returns(path: PathLike) -> int:
    """Number of lines of ``path`` holding a carriage return (CRLF line ends or a stray ``\\r``)."""
    with open(path, "rb") as f:
        return sum(1 for line in f if b"\r" in line)


def _case_problems(path: Path, text: Mapping[str, str], case: Optional[str], max_examples: int) -> List[str]:
    cases = text_cases(text)
    fix = (f"normalise the transcripts where they are made (local/data.sh), or run: python -m "
           f"espnet_lw.bin.validate_data_dir --fix --case {case or 'upper'} {path.parent}")
    if case is not None:
        wrong = [u for c, utts in cases.items() if c != case for u in utts]
        if wrong:
            return [f"{path}: {len(wrong)} transcript(s) not in {case} case like the training set's "
                    f"(e.g. {_examples(wrong, max_examples)}); tokens and scoring are case-sensitive, so they "
                    f"would mis-score\n  fix: {fix}"]
        return []
    if cases.get("upper") and cases.get("lower"):
        return [f"{path}: transcripts mix upper case ({len(cases['upper'])}, e.g. "
                f"{_examples(cases['upper'], 2)}) and lower case ({len(cases['lower'])}, e.g. "
                f"{_examples(cases['lower'], 2)}); tokens and scoring are case-sensitive\n  fix: {fix}"]
    return []


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------
def _examples(items: Iterable[str], n: int) -> str:
    items = sort_keys(items)
    shown = ", ".join(items[:n])
    return shown + (", ..." if len(items) > n else "")


def _check_value(name: str, value: str) -> Optional[str]:
    """Type check for the value of a known numeric table; ``None`` when OK."""
    if name in ("utt2num_samples", "utt2num_frames", "reco2num_samples"):
        try:
            if int(value) <= 0:
                return f"must be a positive integer, got {value!r}"
        except ValueError:
            return f"must be a positive integer, got {value!r}"
    elif name in ("utt2dur", "reco2dur"):
        try:
            if not float(value) > 0:
                return f"must be a positive number of seconds, got {value!r}"
        except ValueError:
            return f"must be a positive number of seconds, got {value!r}"
    elif name in ("utt2spk",) and len(value.split()) != 1:
        return f"speaker id must be exactly one token, got {value!r}"
    return None


def validate_data_dir(
    data_dir: PathLike,
    no_text: bool = False,
    no_wav: bool = False,
    max_examples: int = 5,
    allow_empty_text: bool = False,
    case: Optional[str] = None,
) -> List[str]:
    """Check a data directory; return a list of human-readable problems (empty = OK).

    Each problem starts with the path of the file concerned.  Checked:
    required files present (``utt2spk``, ``spk2utt``, ``wav.scp`` unless
    ``no_wav``, ``text`` unless ``no_text``); every table sorted in C order,
    free of duplicate keys and blank lines; empty values (an empty transcript
    in ``text``, an empty ``wav.scp`` entry...); the same utterance set in
    every utterance-keyed file; ``spk2utt`` equal to the inverse of
    ``utt2spk``; ``segments`` lines well formed, pointing at recordings in
    ``wav.scp`` and not past ``reco2dur``; numeric tables holding numbers.
    ``allow_empty_text`` accepts empty transcripts (stage 3 carries them and
    stage 4 removes them). Transcripts: a carriage return (CRLF line ends) in
    any table is a problem, and so are transcripts that mix upper- and
    lower-case utterances or, with ``case`` (``"upper"`` / ``"lower"``), any
    transcript with letters of the other case (tags like ``<unk>`` aside):
    tokens and scoring are case-sensitive.
    """
    if case is not None and case not in CASES:
        raise ValueError(f"case must be one of {CASES}, got {case!r}")
    d = Path(data_dir)
    if not d.is_dir():
        return [f"{d}: not a directory"]
    problems: List[str] = []
    has_segments = (d / "segments").is_file()

    required = ["utt2spk", "spk2utt"]
    if not no_wav:
        required.append("wav.scp")
    if not no_text:
        required.append("text")
    for name in required:
        if not (d / name).is_file():
            hint = " (regenerate it with --fix)" if name == "spk2utt" and (d / "utt2spk").is_file() else ""
            problems.append(f"{d / name}: required file is missing{hint}")

    tables: Dict[str, Dict[str, str]] = {}
    kinds = list_tables(d)
    for name in kinds:
        path = d / name
        try:
            lines = read_kv_lines(path)
        except UserError as e:
            problems.append(e.format())
            continue
        table: Dict[str, str] = {}
        dups: Dict[str, List[int]] = {}
        blank = [ln.lineno for ln in lines if not ln.key]
        unsorted_at = None
        prev = None
        empty: List[str] = []
        bad_values: List[str] = []
        for ln in lines:
            if not ln.key:
                continue
            if ln.key in table:
                dups.setdefault(ln.key, []).append(ln.lineno)
            else:
                table[ln.key] = ln.value
            if prev is not None and unsorted_at is None and _byte_order(ln.key) < _byte_order(prev):
                unsorted_at = (ln.lineno, ln.key, prev)
            prev = ln.key
            if not ln.value:
                empty.append(ln.key)
            else:
                msg = _check_value(name, ln.value)
                if msg:
                    bad_values.append(f"line {ln.lineno} ({ln.key}): {msg}")
        tables[name] = table
        n_cr = count_carriage_returns(path)
        if n_cr:
            problems.append(f"{path}: {n_cr} line(s) hold a carriage return (CRLF / Windows line ends); "
                            "the tools expect LF only (--fix removes them)")
        if name == "text":
            problems.extend(_case_problems(path, table, case, max_examples))
        if blank:
            problems.append(f"{path}: {len(blank)} blank line(s) (line {blank[0]}...)")
        if unsorted_at:
            lineno, key, prev_key = unsorted_at
            problems.append(
                f"{path}: not sorted in C order (line {lineno}: '{key}' comes after '{prev_key}')"
            )
        if dups:
            problems.append(f"{path}: {len(dups)} duplicate key(s): {_examples(dups, max_examples)}")
        is_text = name == "text" or name.startswith(("text.", "text_"))
        if empty and not (is_text and allow_empty_text):
            what = "empty transcript(s)" if is_text else "key(s) without a value"
            problems.append(f"{path}: {len(empty)} {what}: {_examples(empty, max_examples)}")
        for msg in bad_values[:max_examples]:
            problems.append(f"{path}: {msg}")
        if len(bad_values) > max_examples:
            problems.append(f"{path}: ... and {len(bad_values) - max_examples} more bad value(s)")

    # ---- the reference utterance set
    if "utt2spk" in tables:
        ref_name = "utt2spk"
    else:
        ref_name = next((n for n in ("text", "segments", "wav.scp") if n in tables and kinds[n] == UTT), None)
    if ref_name is None:
        return problems
    utts = set(tables[ref_name])
    for name, kind in kinds.items():
        if kind != UTT or name == ref_name or name not in tables:
            continue
        keys = set(tables[name])
        extra, missing = keys - utts, utts - keys
        if extra:
            problems.append(
                f"{d / name}: {len(extra)} utterance(s) not in {ref_name}: {_examples(extra, max_examples)}"
            )
        if missing:
            problems.append(
                f"{d / name}: {len(missing)} utterance(s) of {ref_name} missing here: "
                f"{_examples(missing, max_examples)}"
            )

    # ---- speakers
    if "utt2spk" in tables:
        expected = utt2spk_to_spk2utt(tables["utt2spk"])
        speakers = set(expected)
        if "spk2utt" in tables:
            got = {spk: sort_keys(v.split()) for spk, v in tables["spk2utt"].items()}
            bad = [spk for spk in set(expected) | set(got) if expected.get(spk) != got.get(spk)]
            if bad:
                problems.append(
                    f"{d / 'spk2utt'}: does not match utt2spk for {len(bad)} speaker(s): "
                    f"{_examples(bad, max_examples)} (regenerate it with --fix)"
                )
        for name, kind in kinds.items():
            if kind != SPK or name == "spk2utt" or name not in tables:
                continue
            keys = set(tables[name])
            if keys - speakers:
                problems.append(
                    f"{d / name}: {len(keys - speakers)} speaker(s) not in utt2spk: "
                    f"{_examples(keys - speakers, max_examples)}"
                )
            if speakers - keys:
                problems.append(
                    f"{d / name}: {len(speakers - keys)} speaker(s) of utt2spk missing here: "
                    f"{_examples(speakers - keys, max_examples)}"
                )

    # ---- recordings and segments
    if has_segments and "segments" in tables:
        recos = set(tables["wav.scp"]) if "wav.scp" in tables else None
        reco2dur = tables.get("reco2dur", {})
        bad_segs: List[str] = []
        for utt, value in tables["segments"].items():
            msg = _segment_problem(value, recos, reco2dur)
            if msg:
                bad_segs.append(f"{utt}: {msg}")
        for msg in bad_segs[:max_examples]:
            problems.append(f"{d / 'segments'}: {msg}")
        if len(bad_segs) > max_examples:
            problems.append(f"{d / 'segments'}: ... and {len(bad_segs) - max_examples} more bad segment(s)")
        if recos is not None:
            for name, kind in kinds.items():
                if kind != RECO or name == "wav.scp" or name not in tables:
                    continue
                extra = set(tables[name]) - recos
                if extra:
                    problems.append(
                        f"{d / name}: {len(extra)} recording(s) not in wav.scp: {_examples(extra, max_examples)}"
                    )
    return problems


# --------------------------------------------------------------------------
# fixing
# --------------------------------------------------------------------------
@dataclass
class FixReport:
    """What :func:`fix_data_dir` did."""

    kept: int = 0
    dropped: Dict[str, List[str]] = field(default_factory=dict)  # reason -> utterance ids
    notes: List[str] = field(default_factory=list)

    @property
    def num_dropped(self) -> int:
        """Number of distinct utterances removed."""
        return len({u for utts in self.dropped.values() for u in utts})

    def summary(self) -> List[str]:
        """Human-readable lines describing the fix."""
        lines = [f"kept {self.kept} utterance(s), dropped {self.num_dropped}"]
        for reason, utts in sorted(self.dropped.items()):
            lines.append(f"  dropped {len(utts)}: {reason} (e.g. {_examples(utts, 3)})")
        lines.extend(self.notes)
        return lines


def fix_data_dir(data_dir: PathLike, no_text: bool = False, backup: bool = True,
                 case: Optional[str] = None) -> FixReport:
    """Repair a data directory in place, keeping what is consistent.

    * every table is de-duplicated (first line wins), stripped of blank lines
      and sorted in C order;
    * only utterances present in *every* utterance-keyed table are kept
      (``utt2spk``, ``text`` (unless ``no_text``), ``wav.scp`` or
      ``segments``, and optional ones such as ``utt2num_samples``), and
      utterances with an empty transcript, an empty speaker, an empty
      ``wav.scp`` entry or a bad segment are dropped;
    * ``spk2utt`` is regenerated; speaker- and recording-keyed tables are
      reduced to the speakers / recordings still used;
    * carriage returns are removed (CRLF line ends; a stray one inside a line
      becomes a space); with ``case`` (``"upper"`` / ``"lower"``) the
      transcripts in ``text`` are converted to it (tags like ``<unk>`` kept),
      the number changed noted in the report.

    The original files are copied to ``<dir>/.backup/`` first (unless
    ``backup=False``).  Returns a :class:`FixReport`.
    """
    d = Path(data_dir)
    if not d.is_dir():
        raise UserError("not a directory", str(d))
    if not (d / "utt2spk").is_file():
        raise UserError(
            "utt2spk is missing; cannot fix a data dir without speakers",
            str(d / "utt2spk"),
            "create utt2spk (use '<utt> <utt>' lines if speakers are unknown)",
        )
    report = FixReport()
    kinds = list_tables(d)
    kinds.pop("spk2utt", None)
    has_segments = "segments" in kinds
    tables: Dict[str, Dict[str, str]] = {}
    for name in kinds:
        lines = read_kv_lines(d / name)
        table: Dict[str, str] = {}
        ndup = 0
        for ln in lines:
            if not ln.key:
                continue
            if ln.key in table:
                ndup += 1
                continue
            table[ln.key] = ln.value
        if ndup:
            report.notes.append(f"{d / name}: removed {ndup} duplicate line(s) (kept the first)")
        n_cr = count_carriage_returns(d / name)
        if n_cr:
            table = {k: " ".join(v.replace("\r", " ").split()) if "\r" in v else v for k, v in table.items()}
            report.notes.append(f"{d / name}: removed carriage returns from {n_cr} line(s)")
        if name == "text" and case is not None:
            before = table
            table = {k: apply_case(v, case) for k, v in table.items()}
            n_case = sum(1 for k in table if table[k] != before[k])
            if n_case:
                report.notes.append(f"{d / name}: {n_case} transcript(s) converted to {case} case")
        tables[name] = table

    def drop(reason: str, utt: str) -> None:
        report.dropped.setdefault(reason, []).append(utt)

    required = ["utt2spk", "segments" if has_segments else "wav.scp"]
    if not no_text and "text" in tables:
        required.append("text")
    utt_tables = [n for n, k in kinds.items() if k == UTT]
    all_utts = set().union(*(tables[n].keys() for n in utt_tables))
    keep = set(all_utts)
    for name in utt_tables:
        for utt in all_utts - set(tables[name]):
            drop(f"missing from {name}", utt)
        keep &= set(tables[name])
    for name in required:
        if name not in tables:
            raise UserError("required file is missing", str(d / name))

    for utt in sort_keys(keep):
        if not tables["utt2spk"][utt].strip() or len(tables["utt2spk"][utt].split()) != 1:
            drop("empty or multi-token speaker in utt2spk", utt)
            keep.discard(utt)
        elif "text" in required and not tables["text"][utt].strip():
            drop("empty transcript in text", utt)
            keep.discard(utt)
        elif not has_segments and not tables["wav.scp"][utt].strip():
            drop("empty wav.scp entry", utt)
            keep.discard(utt)
    if has_segments:
        recos = set(tables["wav.scp"]) if "wav.scp" in tables else None
        if recos is not None:
            recos = {r for r in recos if tables["wav.scp"][r].strip()}
        reco2dur = tables.get("reco2dur", {})
        for utt in sort_keys(keep):
            msg = _segment_problem(tables["segments"][utt], recos, reco2dur)
            if msg:
                drop("bad segment (" + msg.split(":")[0].split("(")[0].strip() + ")", utt)
                keep.discard(utt)

    utt2spk = {u: tables["utt2spk"][u] for u in keep}
    speakers = set(utt2spk.values())
    used_recos = {tables["segments"][u].split()[0] for u in keep} if has_segments else set()

    if backup:
        bdir = d / ".backup"
        bdir.mkdir(exist_ok=True)
        for name in list(kinds) + (["spk2utt"] if (d / "spk2utt").is_file() else []):
            shutil.copy2(d / name, bdir / name)
    for name, kind in kinds.items():
        table = tables[name]
        if kind == UTT:
            new = {k: v for k, v in table.items() if k in keep}
        elif kind == SPK:
            new = {k: v for k, v in table.items() if k in speakers}
        else:
            new = {k: v for k, v in table.items() if k in used_recos}
            if len(new) < len(table):
                report.notes.append(f"{d / name}: removed {len(table) - len(new)} unused recording(s)")
        write_kv(d / name, new)
    write_kv(d / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    report.kept = len(keep)
    return report


# --------------------------------------------------------------------------
# directory-level helpers used by the tools
# --------------------------------------------------------------------------
def read_data_dir_tables(data_dir: PathLike) -> Dict[str, "OrderedDict[str, str]"]:
    """Read every table of a data dir (``spk2utt`` excluded; derive it from ``utt2spk``)."""
    d = Path(data_dir)
    return {name: read_kv(d / name) for name in list_tables(d) if name != "spk2utt"}


def check_valid_or_raise(
    data_dir: PathLike, no_text: bool = False, allow_empty_text: bool = False, max_listed: int = 8,
    case: Optional[str] = None,
) -> None:
    """Raise a :class:`UserError` listing the problems if ``data_dir`` does not validate."""
    problems = validate_data_dir(data_dir, no_text=no_text, allow_empty_text=allow_empty_text, case=case)
    if problems:
        shown = "\n  ".join(problems[:max_listed])
        more = f"\n  ... and {len(problems) - max_listed} more" if len(problems) > max_listed else ""
        raise UserError(
            f"invalid data directory ({len(problems)} problem(s)):\n  {shown}{more}",
            str(data_dir),
            f"run: python -m espnet_lw.bin.validate_data_dir --fix {data_dir}",
        )


@contextlib.contextmanager
def atomic_output_dir(dst: PathLike, overwrite: bool = False, overwrite_flag: str = "--overwrite") -> Iterator[Path]:
    """Build an output directory under a hidden temporary name, rename it at the end.

    Yields the temporary directory (a sibling of ``dst`` named
    ``.<name>.tmp-XXXX``).  On normal exit it becomes ``dst`` (replacing an
    existing ``dst`` only when ``overwrite``); on any exception, Ctrl-C
    included, it is deleted, so an interrupted run never leaves a
    half-written ``dst``.  An existing ``dst`` without ``overwrite`` is a
    :class:`UserError` raised before anything is done.
    """
    dst = Path(dst)
    if (dst.exists() or dst.is_symlink()) and not overwrite:
        raise UserError(
            "output directory already exists",
            str(dst),
            f"remove it, choose another output directory, or pass {overwrite_flag}",
        )
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
    os.chmod(tmp, 0o777 & ~current_umask())
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if dst.exists() or dst.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
        os.rename(dst, old / "x")
        os.rename(tmp, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, dst)


def copy_tables_subset(
    src_tables: Mapping[str, Mapping[str, str]],
    kinds: Mapping[str, str],
    dst_dir: PathLike,
    utts: Iterable[str],
    skip: Sequence[str] = (),
) -> None:
    """Write utterance- and speaker-keyed tables of a source dir restricted to ``utts``.

    ``spk2utt`` is regenerated from the restricted ``utt2spk``; recording-keyed
    tables and names in ``skip`` are not written.
    """
    dst = Path(dst_dir)
    keep = set(utts)
    speakers = None
    if "utt2spk" in src_tables:
        utt2spk = {u: s for u, s in src_tables["utt2spk"].items() if u in keep}
        speakers = set(utt2spk.values())
        write_kv(dst / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    for name, table in src_tables.items():
        if name in skip or name == "spk2utt":
            continue
        kind = kinds.get(name)
        if kind == UTT:
            write_kv(dst / name, {k: v for k, v in table.items() if k in keep})
        elif kind == SPK and speakers is not None:
            write_kv(dst / name, {k: v for k, v in table.items() if k in speakers})
