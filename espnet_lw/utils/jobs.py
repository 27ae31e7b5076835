"""How many parallel jobs a piece of work gets."""

from __future__ import annotations


def n_jobs(n_items: int, nj: int, min_items_per_job: int) -> int:
    """At most ``nj`` jobs, at least one, and no more than one per ``min_items_per_job`` items: a job's
    start (a Python process with ESPnet's imports, a model load) costs more than a few items' work."""
    return max(1, min(nj, n_items // max(1, min_items_per_job)))
