"""Where the benchmark's numbers come from: one commit, a clean tree, one command, one machine.

``benchmark run`` checks the checkout before it trains anything (:func:`check_run`) and records the
result in ``<expdir>/benchmark/provenance.json``; re-running it (to resume) appends to the record's
``runs``. It refuses, unless ``--allow_dirty`` (then every refusal becomes a warning that
benchmark.json and the RESULTS.md section print):

* a dirty tree: ``git status --porcelain`` (untracked files included, ignored ones not) lists
  anything besides the files the benchmark itself writes (:data:`RECIPE_OUTPUTS`, relative to the
  recipe dir: stage 13 and the report rewrite them while the benchmark runs);
* a commit other than the one the expdir's benchmark started at (a resumed run must not mix code);
* an expdir that already holds trained models but no provenance record (trained outside the
  benchmark, at an unknown commit).

``benchmark report`` checks the tree it runs in the same way (:func:`check_report`), since the
report's code computes the numbers too.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from espnet_lw.utils.cli import UserError
from espnet_lw.utils.env import command_output, cpu_description, gpu_description
from espnet_lw.utils.io import atomic_write_text

#: what the benchmark writes into the recipe dir itself (stage 13's RESULTS.md, the report's files)
RECIPE_OUTPUTS = ("RESULTS.md", "benchmark.json", "benchmark_wer_vs_time.png", "logs/benchmark/")
ALLOW_FIX = "commit (or discard) the changes and run again; --allow_dirty runs anyway and marks the report"


def now() -> str:
    return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def machine() -> dict:
    """The machine: CPU model and count, GPU, OS."""
    return {"cpu": cpu_description(), "cpu_count": os.cpu_count(), "gpu": gpu_description(),
            "os": platform.platform(), "python": platform.python_version()}


def _status_path(line: str) -> str:
    """The path of a ``git status --porcelain`` line (the new name of a rename)."""
    path = line[3:]
    if " -> " in path:
        path = path.split(" -> ", 1)[1]
    return path.strip().strip('"')


def git_state(where: Path, outputs: Sequence[str] = ()) -> dict:
    """``{"commit", "clean", "dirty": [porcelain lines], "root"}`` of the repository containing ``where``.

    ``outputs``: paths relative to ``where`` (a trailing ``/``: a whole dir) that may differ from
    the commit without making the tree dirty. Outside git: commit ``None``, not clean.
    """
    where = Path(where).resolve()
    root = command_output(["git", "rev-parse", "--show-toplevel"], cwd=where)
    if not root:
        return {"commit": None, "clean": False, "dirty": ["(not a git checkout, or git missing)"]}
    root_path = Path(root).resolve()
    rel = where.relative_to(root_path) if where != root_path and root_path in where.parents else Path()
    allowed = [(rel / o).as_posix() + ("/" if o.endswith("/") else "") for o in outputs]
    try:  # not command_output: it strips the leading blank of the first status line
        proc = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=root_path,
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"commit": None, "clean": False, "dirty": [f"(git status failed: {e})"]}
    if proc.returncode != 0:
        return {"commit": None, "clean": False, "dirty": [f"(git status failed: {proc.stderr.strip()})"]}
    dirty = []
    for line in proc.stdout.splitlines():
        if not line.strip():
            continue
        path = _status_path(line)
        if any(path == a or (a.endswith("/") and (path + "/").startswith(a)) for a in allowed):
            continue
        dirty.append(line)
    return {"commit": command_output(["git", "rev-parse", "HEAD"], cwd=root_path), "clean": not dirty,
            "dirty": dirty, "root": str(root_path)}


def code_checkout_state(recipe_state: dict) -> Optional[dict]:
    """The git state of the checkout the running ``espnet_lw`` comes from; ``None`` when that is the
    recipe's own checkout (``recipe_state`` already covers it, with the recipe's outputs allowed)."""
    here = Path(__file__).resolve().parent
    root = command_output(["git", "rev-parse", "--show-toplevel"], cwd=here)
    if root and recipe_state.get("root") and Path(root).resolve() == Path(recipe_state["root"]):
        return None
    return git_state(here)


def _dirty_reason(state: dict) -> str:
    shown = state["dirty"][:10]
    more = f" (+{len(state['dirty']) - 10} more)" if len(state["dirty"]) > 10 else ""
    return "uncommitted changes in the checkout: " + "; ".join(s.strip() for s in shown) + more


def record_path(expdir: Path) -> Path:
    return Path(expdir) / "benchmark" / "provenance.json"


def load_record(expdir: Path) -> Optional[dict]:
    """The expdir's provenance record, ``None`` if there is none."""
    path = record_path(expdir)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise UserError(f"unreadable provenance record: {e}", str(path),
                        "move it aside and use a fresh --expdir") from e


def trained_models(expdir: Path) -> List[str]:
    """Names of the trained model dirs (``asr_*/.done.stage11``) of ``expdir``."""
    return sorted(p.parent.name for p in Path(expdir).glob("asr_*/.done.stage11") if ".old." not in p.parent.name)


def check_run(recipe: Path, expdir: Path, command: Optional[str], allow_dirty: bool,
              state: Optional[dict] = None, dry_run: bool = False) -> dict:
    """Check the checkout before training and record it in ``<expdir>/benchmark/provenance.json``.

    Refuses (``UserError``) what the module doc lists unless ``allow_dirty``; returns the record.
    ``state``: the :func:`git_state` to use (tests); ``dry_run``: check, write nothing.
    """
    state = state if state is not None else git_state(recipe, RECIPE_OUTPUTS)
    record = load_record(expdir)
    reasons = []
    if not state["clean"]:
        reasons.append(_dirty_reason(state))
    if record is None:
        models = trained_models(expdir)
        if models:
            reasons.append(f"{expdir} already holds {len(models)} trained model(s) (e.g. {models[0]}) and no "
                           "provenance record: trained outside this benchmark, at an unknown commit")
    elif record.get("commit") != state["commit"]:
        reasons.append(f"this expdir's benchmark started at commit {record.get('commit')}, the checkout is at "
                       f"{state['commit']}: its models would mix code")
    if reasons and not allow_dirty:
        raise UserError("refusing to benchmark: " + " | ".join(reasons),
                        fix=ALLOW_FIX + "; for another commit use a fresh --expdir")
    run = {"date": now(), "command": command, "commit": state["commit"], "clean": state["clean"],
           "dirty": state["dirty"], "allow_dirty": allow_dirty, "warnings": reasons, "machine": machine()}
    if record is None:
        record = {"commit": state["commit"], "runs": []}
    record["runs"].append(run)
    record["warnings"] = sorted(set(record.get("warnings") or []) | set(reasons))
    record["clean"] = not record["warnings"]
    if not dry_run:
        path = record_path(expdir)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return record


def check_report(recipe: Path, expdir: Path, command: Optional[str], allow_dirty: bool,
                 state: Optional[dict] = None, code_state: Optional[dict] = None) -> dict:
    """The ``provenance`` of benchmark.json: the run record and the report's own checkout.

    Refuses a dirty tree at report time unless ``allow_dirty``; warnings of either are collected in
    ``warnings`` (empty: one clean commit throughout). ``code_state``: the git state of the checkout the
    running ``espnet_lw`` comes from (read when ``state`` is not given, and only when it is another
    checkout than the recipe's), which computes the numbers; a commit other than the recipe's (the
    package of another checkout on the path) is a warning, and uncommitted changes there are refused
    like the recipe's own unless ``allow_dirty``.
    """
    if state is None:
        state = git_state(recipe, RECIPE_OUTPUTS)
        code_state = code_state or code_checkout_state(state)
    record = load_record(expdir)
    warnings: List[str] = []
    if code_state and code_state["commit"] and code_state["commit"] != state["commit"]:
        warnings.append(f"report: the espnet_lw code that wrote it is at commit {code_state['commit']}, "
                        f"the recipe's checkout at {state['commit']}")
    if code_state and not code_state["clean"] and code_state.get("root") != state.get("root"):
        reason = "the espnet_lw code that computes it (another checkout) has " + _dirty_reason(code_state)
        if not allow_dirty:
            raise UserError("refusing to write the report: " + reason, fix=ALLOW_FIX)
        warnings.append("report: " + reason)
    if not state["clean"]:
        if not allow_dirty:
            raise UserError("refusing to write the report: " + _dirty_reason(state), fix=ALLOW_FIX)
        warnings.append("report: " + _dirty_reason(state))
    if record is None:
        warnings.append("no provenance record in the expdir: the models were not trained by `benchmark run` "
                        "(commit and tree state of their training unknown)")
    else:
        warnings += ["run: " + w for w in record.get("warnings") or []]
        if record.get("commit") != state["commit"]:
            warnings.append(f"report written at commit {state['commit']}, the models were trained at "
                            f"{record.get('commit')}")
    first = (record or {}).get("runs", [{}])[0] if record else {}
    return {
        "clean": not warnings,
        "warnings": warnings,
        "commit": (record or {}).get("commit", state["commit"]),
        "command": first.get("command") or command,
        "machine": first.get("machine") or machine(),
        "runs": [{k: r.get(k) for k in ("date", "command", "commit", "clean", "allow_dirty")}
                 for r in (record or {}).get("runs", [])],
        "report": {"date": now(), "command": command, "commit": state["commit"], "clean": state["clean"],
                   "dirty": state["dirty"], "allow_dirty": allow_dirty, "machine": machine()},
    }


def data_fingerprint(dumpdir: Path, sets: Sequence[str]) -> Dict[str, dict]:
    """``{set: {"utterances", "text_sha256"}}`` of ``<dumpdir>/raw/<set>/text`` (the data the numbers are on)."""
    out: Dict[str, dict] = {}
    for dset in sets:
        text = Path(dumpdir) / "raw" / dset / "text"
        if text.is_file():
            data = text.read_bytes()
            out[dset] = {"utterances": sum(1 for line in data.splitlines() if line.strip()),
                         "text_sha256": hashlib.sha256(data).hexdigest()[:16]}
    return out
