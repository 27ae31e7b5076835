"""Stage 13 scoring with NIST sclite: trn files, sclite runs and ``result.txt`` parsing.

The layout follows what ESPnet users know from ``asr.sh``::

    <decode_dir>/<dataset>/score_wer/{ref.trn,hyp.trn,result.txt,result.dtl}
    <decode_dir>/<dataset>/score_cer/{ref.trn,hyp.trn,result.txt,result.dtl}

``result.txt`` is sclite's ``-o all stdout`` report (summary by speaker in percent,
the same in raw counts, and the per-utterance alignments); ``result.dtl`` is the
``-o dtl`` report (confusion pairs, most frequent insertions/deletions/substitutions).

Utterance ids
-------------
A trn line is ``TOKEN TOKEN ... (<id>)``.  With ``-i rm`` sclite takes the text
before the *first* ``-`` of ``<id>`` as the speaker, and everything after it as the
utterance name.  As in ESPnet, the id is ``<spk>-<uttid>`` with ``<spk>`` from
``utt2spk`` -- but here any ``-`` in the speaker id is replaced by ``_`` so that a
speaker called ``spk-a`` is not reported as ``spk`` (the utterance id may keep its
dashes: they are after the first one).  Parentheses cannot appear in an id (sclite
would cut the id there), so they are replaced by ``_`` too.  Without ``utt2spk``
every utterance is its own speaker, ESPnet's convention for corpora without speaker
information.

The trn files are written in reference order, keyed by utterance id, so a
hypothesis file in another order is scored correctly.  A reference utterance without a
hypothesis is an error (a partial decode must never yield a WER): :func:`score` names the
count and the first missing ids.  With ``allow_missing=True`` such utterances get an empty
hypothesis line instead (sclite itself would silently skip them), so they count as
deletions.  A hypothesis utterance that is not in the reference is always an error.

Each ``score_<type>`` directory is written under a temporary name and renamed when sclite
has finished, so a kill never leaves a half-written report behind.

CER tokens are the characters of each word, with ``<space>`` between words, like
ESPnet's ``char`` tokenizer.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from espnet_lw.utils.cli import UserError

logger = logging.getLogger(__name__)

#: where the Debian package ``sctk`` installs sclite (not on PATH)
DEBIAN_SCLITE = "/usr/lib/sctk/bin/sclite"
#: word-boundary token in CER scoring
SPACE_SYMBOL = "<space>"
#: the scoring types this module knows
SCORE_TYPES = ("wer", "cer")
INSTALL_FIX = "install the Debian package sctk: apt-get install sctk, or set SCLITE=/path/to/sclite"


# ---------------------------------------------------------------------------
# finding sclite
# ---------------------------------------------------------------------------
def _is_exe(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_sclite() -> List[str]:
    """Return the command (argv prefix) that runs sclite.

    Looked up in this order: the ``SCLITE`` environment variable, ``sclite`` on
    ``PATH``, :data:`DEBIAN_SCLITE`, and the Debian ``sctk`` wrapper
    (``sctk sclite ...``).  Raises :class:`UserError` if none is found.
    """
    env = os.environ.get("SCLITE")
    if env:
        resolved = env if os.sep in env else shutil.which(env)
        if not resolved or not _is_exe(resolved):
            raise UserError(
                "SCLITE is set but is not an executable file",
                path=env,
                fix="point SCLITE at the sclite binary (e.g. SCLITE=/usr/lib/sctk/bin/sclite) or unset it",
            )
        return [resolved]
    on_path = shutil.which("sclite")
    if on_path:
        return [on_path]
    if _is_exe(DEBIAN_SCLITE):
        return [DEBIAN_SCLITE]
    wrapper = shutil.which("sctk")
    if wrapper:
        return [wrapper, "sclite"]
    raise UserError("sclite (NIST SCTK) was not found", fix=INSTALL_FIX)


# ---------------------------------------------------------------------------
# reading Kaldi-style tables
# ---------------------------------------------------------------------------
def read_table(path: Path | str, what: str, allow_empty_value: bool = True) -> Dict[str, str]:
    """Read ``<key> <value...>`` lines into an insertion-ordered dict.

    Blank lines are skipped; a duplicate key, an undecodable file or (with
    ``allow_empty_value=False``) a key without value raises :class:`UserError`
    naming ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} file not found", path=str(path), fix=f"check the path given for the {what}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise UserError(f"not valid UTF-8 ({e.reason} at byte {e.start})", path=str(path),
                        fix="re-encode the file as UTF-8") from None
    table: Dict[str, str] = {}
    for lineno, line in enumerate(lines, 1):
        parts = line.strip().split(maxsplit=1)
        if not parts:
            continue
        key = parts[0]
        value = parts[1] if len(parts) > 1 else ""
        if key in table:
            raise UserError(f"line {lineno}: utterance id {key!r} appears twice", path=str(path),
                            fix=f"keep one line per utterance in the {what}")
        if not value and not allow_empty_value:
            raise UserError(f"line {lineno}: {key!r} has no value", path=str(path),
                            fix=f"every line of the {what} must be '<key> <value>'")
        table[key] = value
    return table


def read_nlsyms(path: Optional[Path | str]) -> List[str]:
    """Read a non-linguistic symbol list (one symbol per line); ``None`` gives ``[]``."""
    if path is None:
        return []
    path = Path(path)
    if not path.is_file():
        raise UserError("non-linguistic symbol list not found", path=str(path), fix="check --nlsyms")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------------------
# tokenisation and trn writing
# ---------------------------------------------------------------------------
def tokenize(text: str, score_type: str, nlsyms: Iterable[str] = ()) -> List[str]:
    """Split ``text`` into scoring tokens.

    ``wer``: whitespace-separated words.  ``cer``: the characters of every word, with
    :data:`SPACE_SYMBOL` between words (runs of blanks count as one boundary).
    Words that are non-linguistic symbols are dropped first in both modes, as
    ESPnet's scoring does.
    """
    drop = set(nlsyms)
    words = [w for w in text.split() if w not in drop]
    if score_type == "wer":
        return words
    if score_type == "cer":
        tokens: List[str] = []
        for i, word in enumerate(words):
            if i:
                tokens.append(SPACE_SYMBOL)
            tokens.extend(word)
        return tokens
    raise ValueError(f"unknown score type {score_type!r}; expected one of {SCORE_TYPES}")


_BAD_ID_CHARS = re.compile(r"[()\s]")


def make_trn_id(uttid: str, spk: Optional[str]) -> str:
    """Return the sclite ``rm``-style id ``<spk>-<uttid>`` (without parentheses).

    ``-`` in the speaker part becomes ``_`` (sclite splits the speaker at the first
    ``-``); parentheses and blanks, which would break the trn line, become ``_``.
    Without a speaker the utterance is its own speaker.
    """
    if spk is None:
        spk = uttid
    spk_part = _BAD_ID_CHARS.sub("_", spk).replace("-", "_") or "_"
    utt_part = _BAD_ID_CHARS.sub("_", uttid)
    return f"{spk_part}-{utt_part}"


def trn_line(tokens: Sequence[str], trn_id: str) -> str:
    """One trn record: ``TOKEN TOKEN ... (<trn_id>)``; an empty record is `` (<trn_id>)``."""
    return " ".join(tokens) + f" ({trn_id})"


@dataclass(frozen=True)
class TrnInfo:
    """What :func:`write_trn_pair` wrote."""

    n_utts: int
    missing_hyp: Tuple[str, ...]  # reference utterances scored against an empty hypothesis


def check_hyp_against_ref(
    ref: Mapping[str, str], hyp: Mapping[str, str], ref_path: str, hyp_path: str
) -> Tuple[str, ...]:
    """Raise if ``hyp`` has utterances not in ``ref``; return the ref utterances missing in hyp."""
    unknown = [u for u in hyp if u not in ref]
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
        raise UserError(
            f"{len(unknown)} hypothesis utterance(s) not in the reference {ref_path}: {shown}",
            path=hyp_path,
            fix="score the hypothesis against the reference of the same data set (--ref dump/raw/<set>/text)",
        )
    return tuple(u for u in ref if u not in hyp)


def build_trn_ids(
    ref: Mapping[str, str], utt2spk: Optional[Mapping[str, str]], utt2spk_path: Optional[str]
) -> Dict[str, str]:
    """Map every reference utterance to its unique trn id; check ``utt2spk`` covers them."""
    if utt2spk is not None:
        lacking = [u for u in ref if u not in utt2spk]
        if lacking:
            raise UserError(
                f"{len(lacking)} reference utterance(s) have no speaker, e.g. {lacking[0]!r}",
                path=utt2spk_path,
                fix="give the utt2spk of the same data set as --ref, or leave --utt2spk out",
            )
    ids: Dict[str, str] = {}
    seen: Dict[str, str] = {}
    for utt in ref:
        trn_id = make_trn_id(utt, utt2spk[utt] if utt2spk is not None else None)
        if trn_id in seen:
            raise UserError(
                f"utterances {seen[trn_id]!r} and {utt!r} give the same sclite id {trn_id!r} "
                "after replacing '(', ')' and blanks",
                path=utt2spk_path,
                fix="rename one of the utterances (ids must not differ only in parentheses)",
            )
        seen[trn_id] = utt
        ids[utt] = trn_id
    return ids


def write_trn_pair(
    ref: Mapping[str, str],
    hyp: Mapping[str, str],
    trn_ids: Mapping[str, str],
    score_dir: Path | str,
    score_type: str,
    nlsyms: Iterable[str] = (),
) -> TrnInfo:
    """Write ``score_dir/ref.trn`` and ``score_dir/hyp.trn`` in reference order.

    ``hyp`` must only hold reference utterances (see :func:`check_hyp_against_ref`);
    missing ones get an empty hypothesis line.
    """
    score_dir = Path(score_dir)
    score_dir.mkdir(parents=True, exist_ok=True)
    nlsyms = list(nlsyms)
    ref_lines, hyp_lines, missing = [], [], []
    for utt, text in ref.items():
        trn_id = trn_ids[utt]
        ref_lines.append(trn_line(tokenize(text, score_type, nlsyms), trn_id))
        if utt not in hyp:
            missing.append(utt)
        hyp_lines.append(trn_line(tokenize(hyp.get(utt, ""), score_type, nlsyms), trn_id))
    (score_dir / "ref.trn").write_text("\n".join(ref_lines) + "\n", encoding="utf-8")
    (score_dir / "hyp.trn").write_text("\n".join(hyp_lines) + "\n", encoding="utf-8")
    return TrnInfo(n_utts=len(ref_lines), missing_hyp=tuple(missing))


# ---------------------------------------------------------------------------
# running sclite
# ---------------------------------------------------------------------------
def run_sclite(
    score_dir: Path | str,
    sclite: Optional[Sequence[str]] = None,
    extra_opts: Sequence[str] = (),
    detail: bool = True,
) -> Path:
    """Run sclite on ``score_dir/{ref,hyp}.trn``; write ``result.txt`` (and ``result.dtl``).

    The command is ``sclite [extra_opts] -r ref.trn trn -h hyp.trn trn -i rm -o all
    stdout``, as in ESPnet.  Returns the path of ``result.txt``.  A failing sclite
    raises :class:`UserError` with sclite's own message.
    """
    score_dir = Path(score_dir)
    cmd_prefix = list(sclite) if sclite else find_sclite()
    reports = [("result.txt", ["all"])]
    if detail:
        reports.append(("result.dtl", ["dtl"]))
    else:
        (score_dir / "result.dtl").unlink(missing_ok=True)  # no stale report from an earlier run
    for out_name, report in reports:
        cmd = cmd_prefix + list(extra_opts) + [
            "-r", "ref.trn", "trn", "-h", "hyp.trn", "trn", "-i", "rm", "-o", *report, "stdout",
        ]
        logger.debug("running %s in %s", " ".join(cmd), score_dir)
        proc = subprocess.run(cmd, cwd=score_dir, capture_output=True, text=True, errors="replace")
        out_path = score_dir / out_name
        out_path.write_text(proc.stdout, encoding="utf-8")
        # sclite writes its errors on stdout or stderr and exits 1
        if proc.returncode != 0 or (out_name == "result.txt" and "Sum/Avg" not in proc.stdout):
            msg = " ".join((proc.stderr + "\n" + proc.stdout).split()[:60])
            raise UserError(
                f"sclite failed (exit {proc.returncode}): {msg}",
                path=str(score_dir / "hyp.trn"),
                fix=f"check ref.trn/hyp.trn in {score_dir}; the full command was: {' '.join(cmd)}",
            )
    return score_dir / "result.txt"


# ---------------------------------------------------------------------------
# parsing result.txt
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ScoreSummary:
    """sclite's ``Sum/Avg`` line: counts of sentences/words and rates in percent.

    ``n_*`` are the raw counts from the ``Sum`` line of the second table (``None``
    when that table is absent, e.g. for ``-o sum`` output).
    """

    snt: int
    wrd: int
    corr: float
    sub: float
    del_: float
    ins: float
    err: float
    s_err: float
    n_corr: Optional[int] = None
    n_sub: Optional[int] = None
    n_del: Optional[int] = None
    n_ins: Optional[int] = None
    n_err: Optional[int] = None
    n_s_err: Optional[int] = None

    #: column names in ESPnet's RESULTS.md order
    COLUMNS = ("Snt", "Wrd", "Corr", "Sub", "Del", "Ins", "Err", "S.Err")

    def row(self) -> List[str]:
        """Cells for a RESULTS.md row: counts as integers, rates with one decimal."""
        return [str(self.snt), str(self.wrd)] + [
            f"{v:.1f}" for v in (self.corr, self.sub, self.del_, self.ins, self.err, self.s_err)
        ]

    def as_dict(self) -> Dict[str, object]:
        """Plain dict (for JSON)."""
        return asdict(self)


_NUM = re.compile(r"-?\d+(?:\.\d+)?")


def _numbers_after_label(line: str) -> List[str]:
    """Numbers of a ``| label | a b | c d e f g h |`` table line (label excluded)."""
    cells = line.split("|")
    # cells[0] is the indentation, cells[1] the label
    return _NUM.findall(" ".join(cells[2:]))


def parse_result(path: Path | str) -> ScoreSummary:
    """Parse the ``Sum/Avg`` line (and the raw-count ``Sum`` line) of sclite's report."""
    path = Path(path)
    if not path.is_file():
        raise UserError("sclite result not found", path=str(path), fix="run the scoring stage first")
    text = path.read_text(encoding="utf-8", errors="replace")
    pct: Optional[List[str]] = None
    raw: Optional[List[str]] = None
    for line in text.splitlines():
        if "|" not in line:
            continue
        cells = line.split("|")
        if len(cells) < 3:
            continue
        label = cells[1].strip()
        if label == "Sum/Avg" and pct is None:
            pct = _numbers_after_label(line)
        elif label == "Sum" and raw is None:
            raw = _numbers_after_label(line)
    if pct is None or len(pct) != 8:
        raise UserError(
            "no parsable 'Sum/Avg' line (is this sclite '-o all' or '-o sum' output?)",
            path=str(path),
            fix="re-run scoring: python -m espnet_lw.bin.score_sclite --ref ... --hyp ... --out ...",
        )
    counts: Dict[str, Optional[int]] = dict.fromkeys(
        ("n_corr", "n_sub", "n_del", "n_ins", "n_err", "n_s_err"), None
    )
    if raw is not None and len(raw) == 8:
        counts = dict(zip(counts, (int(float(v)) for v in raw[2:])))
    return ScoreSummary(
        snt=int(float(pct[0])),
        wrd=int(float(pct[1])),
        corr=float(pct[2]),
        sub=float(pct[3]),
        del_=float(pct[4]),
        ins=float(pct[5]),
        err=float(pct[6]),
        s_err=float(pct[7]),
        **counts,
    )


# ---------------------------------------------------------------------------
# the whole stage for one data set
# ---------------------------------------------------------------------------
def missing_hyp_error(missing: Sequence[str], n_ref: int, hyp_path: str) -> UserError:
    """The refusal of a decode that lacks hypotheses: the count and the first missing ids."""
    shown = ", ".join(missing[:5]) + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else "")
    return UserError(
        f"{len(missing)} of {n_ref} reference utterance(s) have no hypothesis: {shown}; "
        "refusing to score a partial decode",
        path=hyp_path,
        fix="the decoding did not finish (interrupted?): decode again (lw.sh --stage 12 --overwrite true), "
        "or pass --allow_missing to score the missing utterances as deletions",
    )


def _replace_dir(tmp: Path, final: Path) -> None:
    """Rename the finished ``tmp`` to ``final``; an older ``final`` is removed only after that."""
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def score(
    ref_path: Path | str,
    hyp_path: Path | str,
    out_dir: Path | str,
    utt2spk_path: Optional[Path | str] = None,
    score_types: Sequence[str] = SCORE_TYPES,
    nlsyms: Iterable[str] = (),
    sclite_opts: Sequence[str] = (),
    detail: bool = True,
    allow_missing: bool = False,
) -> Dict[str, ScoreSummary]:
    """Score one decoded data set; write ``out_dir/score_<type>/`` for each type.

    A reference utterance without a hypothesis raises :class:`UserError` (count and first ids)
    unless ``allow_missing``, which scores it as deletions.  Returns ``{score_type: ScoreSummary}``.
    """
    ref_path, hyp_path, out_dir = str(ref_path), str(hyp_path), Path(out_dir)
    ref = read_table(ref_path, "reference text")
    if not ref:
        raise UserError("reference text has no utterances", path=ref_path, fix="check --ref")
    hyp = read_table(hyp_path, "hypothesis text")
    missing = check_hyp_against_ref(ref, hyp, ref_path, hyp_path)
    if missing and not allow_missing:
        raise missing_hyp_error(missing, len(ref), hyp_path)
    if missing:
        logger.warning(
            "%s: %d of %d reference utterances have no hypothesis (e.g. %s); scored as deletions",
            hyp_path, len(missing), len(ref), missing[0],
        )
    utt2spk = None
    if utt2spk_path is not None:
        utt2spk = read_table(utt2spk_path, "utt2spk", allow_empty_value=False)
    trn_ids = build_trn_ids(ref, utt2spk, str(utt2spk_path) if utt2spk_path else None)
    sclite = find_sclite()
    nlsyms = list(nlsyms)
    results: Dict[str, ScoreSummary] = {}
    for score_type in score_types:
        final = out_dir / f"score_{score_type}"
        score_dir = out_dir / f".score_{score_type}.tmp"
        if score_dir.exists():
            shutil.rmtree(score_dir)  # left by an interrupted run
        write_trn_pair(ref, hyp, trn_ids, score_dir, score_type, nlsyms)
        summary = parse_result(run_sclite(score_dir, sclite, sclite_opts, detail))
        _replace_dir(score_dir, final)
        results[score_type] = summary
    return results
