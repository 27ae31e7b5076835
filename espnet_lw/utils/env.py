"""What this machine and checkout are: package versions, git commit, CPU and GPU, durations.

Used by the RESULTS.md writer (:mod:`espnet_lw.results`) and the benchmark report
(:mod:`espnet_lw.benchmark.report`), so that both describe the environment the same way.
Nothing here fails: a missing tool or package is reported as such.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional


def human_duration(seconds: float) -> str:
    """``3725.4`` -> ``1h02m05s``; ``65`` -> ``1m05s``; ``4.2`` -> ``4.2s``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    total = int(round(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def package_version(dist: str) -> str:
    """The installed version of the distribution ``dist``, or ``not installed``."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def espnet_lw_version() -> str:
    """espnet_lw's installed version, else the source tree's ``__version__`` (marked as such)."""
    try:
        return importlib.metadata.version("espnet_lw")
    except importlib.metadata.PackageNotFoundError:
        import espnet_lw

        return getattr(espnet_lw, "__version__", "unknown") + " (source tree)"


def command_output(cmd: List[str], cwd: Optional[Path] = None) -> Optional[str]:
    """stdout of ``cmd`` stripped, or ``None`` if it fails or is missing."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_head(where: Path) -> Optional[str]:
    """The commit hash of the repository containing ``where``; ``None`` outside git (or without git)."""
    return command_output(["git", "rev-parse", "HEAD"], cwd=where)


def git_dirty(where: Path) -> bool:
    """Whether the repository containing ``where`` has uncommitted changes to tracked files."""
    return bool(command_output(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where))


def git_description(where: Path) -> List[str]:
    """Markdown bullet lines about the git commit of the repository containing ``where``."""
    head = git_head(where)
    if not head:
        return ["- Git hash: not a git checkout (or git missing)"]
    lines = [f"- Git hash: `{head}`"]
    date = command_output(["git", "log", "-1", "--format=%cd"], cwd=where)
    if date:
        lines.append(f"  - Commit date: `{date}`")
    if git_dirty(where):
        lines.append("  - with uncommitted changes to tracked files")
    return lines


def cpu_description() -> str:
    """``<model name> (<n> cores)`` from /proc/cpuinfo, else platform.processor()."""
    name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    name = name or platform.processor() or platform.machine() or "unknown"
    return f"{name} ({os.cpu_count()} logical cores)"


def gpu_description() -> str:
    """GPU names/memory from ``nvidia-smi``, or ``none detected``."""
    out = command_output(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"])
    if not out:
        return "none detected"
    gpus = [g.strip() for g in out.splitlines() if g.strip()]
    counts: Dict[str, int] = {}
    for g in gpus:
        counts[g] = counts.get(g, 0) + 1
    return ", ".join(f"{n}x {g}" for g, n in counts.items())
