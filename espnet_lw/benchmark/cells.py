"""Table cells the benchmark's markdown shares: speed-ups, the fastest baseline, a bar met or not."""

from __future__ import annotations

from typing import List, Optional, Sequence


def fmt_x(x: Optional[float]) -> str:
    """A speed-up: ``2.50x``; ``-`` when unknown."""
    return "-" if x is None else f"{x:.2f}x"


def met(ok: Optional[bool]) -> str:
    """A bar: ``met``, ``**not met**``, or ``?`` when it cannot be judged yet."""
    return "?" if ok is None else ("met" if ok else "**not met**")


def fmt_fastest(fast: Optional[dict]) -> str:
    """A row's speed-up against the fastest baseline: ``wall / updates (`baseline`)``, both baselines named
    where they differ (``-`` for a measure no baseline reaches the target in); ``-`` for a baseline row, no
    name where no baseline reaches the target."""
    if not fast:
        return "-"
    text = f"{fmt_x(fast['wall_seconds']['speedup'])} / {fmt_x(fast['updates']['speedup'])}"
    wall_b, upd_b = fast["wall_seconds"]["baseline"], fast["updates"]["baseline"]
    if wall_b is None and upd_b is None:
        return text
    if wall_b == upd_b:
        return text + f" (`{wall_b}`)"
    names = ["-" if b is None else f"`{b}`" for b in (wall_b, upd_b)]
    return text + f" ({names[0]} / {names[1]})"


def speed_bar_cells(row: dict, bars: Sequence[float]) -> List[str]:
    """``wall A / B: met`` and ``updates A / B: **not met**``: a system's speed-ups against scratch (A) and
    the fastest baseline (B), per measure, judged against ``bars`` = (vs scratch, vs fastest baseline)."""
    vs_s, fast = row["speedup_vs_scratch"], row.get("speedup_vs_fastest_baseline") or {}
    out = []
    for m, label in (("wall_seconds", "wall"), ("updates", "updates")):
        a, b = vs_s.get(m), (fast.get(m) or {}).get("speedup")
        ok = None if a is None or b is None else (a >= bars[0] and b >= bars[1])
        out.append(f"{label} {fmt_x(a)} / {fmt_x(b)}: {met(ok)}")
    return out
