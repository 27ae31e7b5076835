"""CTC decoders: greedy and prefix beam search against brute-force enumeration."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from espnet_lw.decoding import greedy_search, prefix_beam_search


def collapse(path, blank=0):
    return tuple(t for i, t in enumerate(path) if t != blank and (i == 0 or t != path[i - 1]))


def brute_force(log_probs, blank=0):
    """Exact P(label sequence) by summing over every alignment (tiny T and V only)."""
    T, V = log_probs.shape
    scores = {}
    for path in itertools.product(range(V), repeat=T):
        lab = collapse(path, blank)
        p = sum(log_probs[t, c] for t, c in enumerate(path))
        scores[lab] = np.logaddexp(scores.get(lab, -math.inf), p)
    return scores


def random_log_probs(T, V, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(T, V)) * 2
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def test_greedy_merges_repeats_and_drops_blanks():
    ids = [0, 3, 3, 0, 3, 2, 2, 0]
    lp = np.log(np.eye(5)[ids] * 0.96 + 0.01)
    assert greedy_search(lp, blank=0) == [3, 3, 2]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prefix_beam_matches_exact_sum_with_full_beam(seed):
    lp = random_log_probs(T=5, V=3, seed=seed)
    exact = brute_force(lp)
    best_label = max(exact, key=exact.get)
    hyps = prefix_beam_search(lp, beam_size=50, token_prune=3)
    assert tuple(hyps[0][0]) == best_label
    assert hyps[0][1] == pytest.approx(exact[best_label], abs=1e-9)
    # every returned prefix carries its exact total probability
    for ids, score in hyps[:5]:
        assert score == pytest.approx(exact[tuple(ids)], abs=1e-9)


def test_prefix_beam_can_beat_best_path():
    # best path is "blank blank" (p=.36) but "a" has more total mass (.16+.24+.24=.64)
    lp = np.log(np.array([[0.6, 0.4], [0.6, 0.4]]))
    assert greedy_search(lp) == []
    assert prefix_beam_search(lp, beam_size=4)[0][0] == [1]


def test_decoding_and_statistics_jobs_follow_the_set_size():
    """A small set is decoded (and its statistics collected) in one process: starting a job costs more than
    a few utterances; a large one gets up to --nj jobs; on a GPU always one."""
    from espnet_lw.inference import MIN_UTTS_PER_JOB, decode_jobs
    from espnet_lw.utils.jobs import n_jobs

    assert decode_jobs(12, nj=2) == 1
    assert decode_jobs(2 * MIN_UTTS_PER_JOB - 1, nj=2) == 1
    assert decode_jobs(2 * MIN_UTTS_PER_JOB, nj=2) == 2
    assert decode_jobs(624, nj=4) == 4 and decode_jobs(624, nj=8) == 6
    assert decode_jobs(5000, nj=2, ngpu=1) == 1
    assert decode_jobs(5, nj=3, min_utts_per_job=1) == 3
    assert n_jobs(0, 2, 100) == 1 and n_jobs(10, 0, 1) == 1
