"""Per-utterance word errors and the paired bootstrap of a WER difference.

Word errors of one utterance are counted as sclite counts them: an alignment of the reference and
hypothesis tokens with sclite's default costs (substitution 4, insertion 3, deletion 3, correct 0),
ties broken towards fewer errors; errors = substitutions + deletions + insertions. The tokens are
read from the ``score_wer/ref.trn`` and ``score_wer/hyp.trn`` that stage 13 (and the per-epoch
decoding) wrote for sclite, so they are exactly the tokens sclite scored.

:func:`paired_bootstrap` resamples utterances with replacement (the same utterances for both
systems: paired) and gives a percentile interval of ``WER(a) - WER(b)`` in WER points, where a
resampled WER is the resampled errors over the resampled reference words.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

#: sclite's default alignment costs
SUB_COST, INS_COST, DEL_COST = 4, 3, 3


def word_errors(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Substitutions + deletions + insertions of the sclite-cost alignment of ``hyp`` to ``ref``."""
    n, m = len(ref), len(hyp)
    if n == 0 or m == 0:
        return n + m
    # row of (cost, errors) pairs, compared lexicographically: the cheapest path, then the fewest errors
    prev = [(j * INS_COST, j) for j in range(m + 1)]
    for i in range(1, n + 1):
        cur = [(i * DEL_COST, i)] + [(0, 0)] * m
        r = ref[i - 1]
        for j in range(1, m + 1):
            c, e = prev[j - 1]
            diag = (c, e) if r == hyp[j - 1] else (c + SUB_COST, e + 1)
            up = (prev[j][0] + DEL_COST, prev[j][1] + 1)
            left = (cur[j - 1][0] + INS_COST, cur[j - 1][1] + 1)
            cur[j] = min(diag, up, left)
        prev = cur
    return prev[m][1]


def read_trn(path: Path | str) -> Dict[str, list]:
    """``{trn id: tokens}`` of a trn file (``TOKEN TOKEN ... (<id>)`` per line)."""
    out: Dict[str, list] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.rstrip()
        if not line.endswith(")") or "(" not in line:
            continue
        i = line.rfind("(")
        out[line[i + 1:-1]] = line[:i].split()
    return out


def utterance_errors(score_dir: Path | str) -> Dict[str, Tuple[int, int]]:
    """``{trn id: (word errors, reference words)}`` of a ``score_wer`` dir (its ref.trn / hyp.trn).

    A reference utterance without a hypothesis line counts as all deletions.
    """
    score_dir = Path(score_dir)
    ref = read_trn(score_dir / "ref.trn")
    hyp = read_trn(score_dir / "hyp.trn")
    return {u: (word_errors(toks, hyp.get(u, [])), len(toks)) for u, toks in ref.items()}


def mean_errors(per_seed: Sequence[Mapping[str, Tuple[int, int]]]) -> Dict[str, Tuple[float, int]]:
    """The errors of each utterance averaged over the runs (seeds) of one system.

    Only utterances every run has are kept; their reference word counts must agree.
    """
    if not per_seed:
        return {}
    common = set(per_seed[0]).intersection(*per_seed[1:])
    out: Dict[str, Tuple[float, int]] = {}
    for u in sorted(common):
        nrefs = {run[u][1] for run in per_seed}
        if len(nrefs) != 1:
            raise ValueError(f"utterance {u}: the runs disagree on its reference length {sorted(nrefs)}")
        out[u] = (float(np.mean([run[u][0] for run in per_seed])), nrefs.pop())
    return out


@dataclass
class BootstrapResult:
    """``WER(a) - WER(b)`` (points) on the utterances both have, with its percentile interval."""

    delta: float  #: WER(a) - WER(b) on the full set, in WER points
    low: float
    high: float
    wer_a: float
    wer_b: float
    n_utts: int
    n_words: int
    resamples: int
    seed: int
    level: float  #: e.g. 0.95

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict:
        d = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}
        d["excludes_zero"] = self.excludes_zero
        return d


def paired_bootstrap(errors_a: Mapping[str, Tuple[float, int]], errors_b: Mapping[str, Tuple[float, int]],
                     resamples: int = 1000, seed: int = 0, level: float = 0.95) -> Optional[BootstrapResult]:
    """Paired bootstrap over utterances of ``WER(a) - WER(b)``; ``None`` without common utterances.

    ``errors_*``: ``{utterance: (word errors, reference words)}`` (errors may be seed means).
    ``seed`` fixes the resampling, so the same inputs give the same interval.
    """
    utts = sorted(set(errors_a) & set(errors_b))
    if not utts:
        return None
    nref = np.array([errors_a[u][1] for u in utts], dtype=float)
    if any(errors_b[u][1] != errors_a[u][1] for u in utts):
        raise ValueError("the two systems were scored against different references")
    ea = np.array([errors_a[u][0] for u in utts], dtype=float)
    eb = np.array([errors_b[u][0] for u in utts], dtype=float)
    total = nref.sum()
    if total <= 0:
        return None
    delta = 100.0 * (ea.sum() - eb.sum()) / total
    rng = np.random.default_rng(seed)
    n = len(utts)
    deltas = np.empty(resamples)
    for start in range(0, resamples, 200):  # bounded memory: 200 x n indices at a time
        idx = rng.integers(0, n, size=(min(200, resamples - start), n))
        words = nref[idx].sum(axis=1)
        words[words == 0] = np.nan
        deltas[start:start + len(idx)] = 100.0 * (ea[idx].sum(axis=1) - eb[idx].sum(axis=1)) / words
    deltas = deltas[~np.isnan(deltas)]
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(deltas, [alpha, 1.0 - alpha]) if len(deltas) else (float("nan"), float("nan"))
    return BootstrapResult(delta=float(delta), low=float(low), high=float(high),
                           wer_a=float(100.0 * ea.sum() / total), wer_b=float(100.0 * eb.sum() / total),
                           n_utts=n, n_words=int(total), resamples=resamples, seed=seed, level=level)
