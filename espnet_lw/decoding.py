"""CTC decoders: best path (greedy) and frame-synchronous prefix beam search.

Both work on the log-posteriors of a CTC head, shape ``(T, V)`` for one utterance, and return
token ids with blanks and repeats removed. The prefix beam search follows the usual
formulation (Hannun et al., 2014, "First-Pass Large Vocabulary Continuous Speech Recognition
using Bi-Directional Recurrent DNNs"): every prefix keeps two scores, ending in blank and
ending in a non-blank, so that different alignments of the same prefix are summed.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

NEG_INF = -math.inf


def _logadd(*xs: float) -> float:
    m = max(xs)
    if m == NEG_INF:
        return NEG_INF
    return m + math.log(sum(math.exp(x - m) for x in xs))


def greedy_search(log_probs: np.ndarray, blank: int = 0) -> list[int]:
    """Best path: argmax per frame, merge repeats, drop blanks."""
    best = np.asarray(log_probs).argmax(axis=-1).tolist()
    return [t for i, t in enumerate(best) if t != blank and (i == 0 or t != best[i - 1])]


def prefix_beam_search(
    log_probs: np.ndarray, beam_size: int = 10, blank: int = 0, token_prune: int | None = None
) -> list[tuple[list[int], float]]:
    """CTC prefix beam search over ``log_probs`` (T, V); returns [(ids, log score)] best first.

    ``token_prune`` keeps only the most likely tokens of each frame (default: ``beam_size``),
    which makes the search cost independent of the vocabulary size.
    """
    lp = np.asarray(log_probs, dtype=np.float64)
    k = min(token_prune or beam_size, lp.shape[1])
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}  # prefix -> (blank, non-blank)
    for t in range(lp.shape[0]):
        frame = lp[t]
        cands = np.argpartition(-frame, k - 1)[:k].tolist()
        if blank not in cands:
            cands.append(blank)
        nxt: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [NEG_INF, NEG_INF])
        for prefix, (pb, pnb) in beams.items():
            last = prefix[-1] if prefix else None
            for c in cands:
                p = float(frame[c])
                if c == blank:
                    entry = nxt[prefix]
                    entry[0] = _logadd(entry[0], pb + p, pnb + p)
                    continue
                extended = nxt[prefix + (c,)]
                if c == last:
                    # a repeated token extends the prefix only across a blank ...
                    extended[1] = _logadd(extended[1], pb + p)
                    # ... otherwise it collapses into the same prefix
                    same = nxt[prefix]
                    same[1] = _logadd(same[1], pnb + p)
                else:
                    extended[1] = _logadd(extended[1], pb + p, pnb + p)
        ranked = sorted(nxt.items(), key=lambda kv: _logadd(*kv[1]), reverse=True)[:beam_size]
        beams = {prefix: (s[0], s[1]) for prefix, s in ranked}
    final = sorted(beams.items(), key=lambda kv: _logadd(*kv[1]), reverse=True)
    return [(list(prefix), _logadd(*s)) for prefix, s in final]
