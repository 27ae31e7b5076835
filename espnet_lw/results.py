"""RESULTS.md: sclite results of an exp dir as ESPnet-style markdown tables (stage 13).

Scans ``EXP_DIR/*/decode_*/*/score_{wer,cer}/result.txt`` (the layout written by
``python -m espnet_lw.bin.score_sclite``) and writes:

* ``# RESULTS`` with an *Environments* section: date, OS, python, torch, espnet and
  espnet_lw versions, the git commit of the repository holding the output (and
  whether it had uncommitted changes), CPU and GPU;
* the command that last wrote the file;
* a table of stage wall times from a stage-times TSV (lines
  ``stage<TAB>description<TAB>seconds<TAB>status``);
* for every model directory ``## <exp dir>/<model>``, the command that trained it
  (``run_command.txt``, written by the stage driver) and its parameter count when
  ``params.txt`` or ``num_params.txt`` exists there, then ``### WER`` and
  ``### CER`` tables with one row per ``decode_*/<dataset>``.

Rates are sclite's ``Sum/Avg`` percentages with one decimal.  Rows and sections are
sorted by name, so the file depends only on the inputs (and the date).
The command line is ``python -m espnet_lw.bin.make_results``.
"""

from __future__ import annotations

import datetime
import logging
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from espnet_lw.scoring import SCORE_TYPES, ScoreSummary, parse_result
from espnet_lw.utils.cli import UserError
from espnet_lw.utils.env import (
    cpu_description,
    espnet_lw_version,
    git_description,
    gpu_description,
    human_duration,
    package_version,
)
from espnet_lw.utils.io import atomic_write_text

#: files in a model dir that may hold its parameter count
PARAM_FILES = ("params.txt", "num_params.txt")
#: written by the stage driver next to a model it trained: the command the user typed
COMMAND_FILE = "run_command.txt"
#: sections other tools own inside RESULTS.md (e.g. the benchmark); kept when it is rewritten
KEPT_SECTIONS = ("notes", "benchmark", "device", "adapt")


# ---------------------------------------------------------------------------
# collecting results
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ResultRow:
    """One scored data set: ``model/decode/dataset`` and its sclite summary."""

    model: str
    decode: str
    dataset: str
    score_type: str
    summary: ScoreSummary


def collect_results(exp_dir: Path) -> List[ResultRow]:
    """Find and parse every ``*/decode_*/*/score_{wer,cer}/result.txt`` under ``exp_dir``."""
    rows: List[ResultRow] = []
    for score_type in SCORE_TYPES:
        for result in exp_dir.glob(f"*/decode_*/*/score_{score_type}/result.txt"):
            dataset_dir = result.parent.parent
            decode_dir = dataset_dir.parent
            rows.append(
                ResultRow(
                    model=decode_dir.parent.name,
                    decode=decode_dir.name,
                    dataset=dataset_dir.name,
                    score_type=score_type,
                    summary=parse_result(result),
                )
            )
    rows.sort(key=lambda r: (r.model, r.score_type, r.decode, r.dataset))
    return rows


# ---------------------------------------------------------------------------
# stage times
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class StageTime:
    """One line of the stage-times TSV."""

    stage: str
    description: str
    seconds: float
    status: str


def read_stage_times(path: Path) -> List[StageTime]:
    """Parse ``stage<TAB>description<TAB>seconds<TAB>status`` lines (a header line is allowed)."""
    out: List[StageTime] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cells = line.rstrip("\n").split("\t")
        if lineno == 1 and cells[0].strip().lower() == "stage":
            continue  # header
        if len(cells) < 3:
            raise UserError(
                f"line {lineno}: expected 'stage<TAB>description<TAB>seconds<TAB>status', got {line!r}",
                path=str(path),
                fix="fix or delete the line (the recipe driver appends one line per stage run)",
            )
        try:
            seconds = float(cells[2])
        except ValueError:
            raise UserError(f"line {lineno}: seconds {cells[2]!r} is not a number", path=str(path),
                            fix="the third column must be the wall time in seconds") from None
        status = cells[3].strip() if len(cells) > 3 else ""
        out.append(StageTime(cells[0].strip(), cells[1].strip(), seconds, status))
    return latest_work(out)


def latest_work(times: List[StageTime]) -> List[StageTime]:
    """One line per (stage, description): the last run that did the work.

    The driver appends a line each time a stage is selected, also when it only finds the
    stage finished and skips it; the table should show what the work cost, so a later
    ``skipped`` line does not hide an earlier ``done`` one.
    """
    chosen: dict = {}
    for t in times:
        key = (t.stage, t.description)
        if key not in chosen or t.status != "skipped" or chosen[key].status == "skipped":
            chosen[key] = t

    def order(t: StageTime):
        return (int(t.stage) if t.stage.isdigit() else 10**6, t.description)

    return sorted(chosen.values(), key=order)


# ---------------------------------------------------------------------------
# environment
# ---------------------------------------------------------------------------
def environment_lines(repo_dir: Path, date: str, hardware: Optional[str]) -> List[str]:
    """The ``## Environments`` section."""
    lines = [
        "## Environments",
        f"- date: `{date}`",
        f"- OS: `{platform.platform()}`",
        f"- python version: `{platform.python_version()}`",
        f"- pytorch version: `{package_version('torch')}`",
        f"- espnet version: `{package_version('espnet')}`",
        f"- espnet_lw version: `{espnet_lw_version()}`",
    ]
    lines += git_description(repo_dir)
    lines.append(f"- CPU: `{cpu_description()}`")
    lines.append(f"- GPU: `{gpu_description()}`")
    if hardware:
        lines.append(f"- hardware note: {hardware}")
    return lines


# ---------------------------------------------------------------------------
# model info
# ---------------------------------------------------------------------------
def format_params(text: str) -> Optional[str]:
    """``"1234567"`` -> ``"1.23 M (1,234,567)"``; ``"12.5M"`` is kept; ``None`` if empty."""
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not first:
        return None
    m = re.fullmatch(r"(?:[A-Za-z_ ]*[:=]\s*)?([\d,_]+)", first)
    if m:
        n = int(re.sub(r"[,_]", "", m.group(1)))
        return f"{n / 1e6:.2f} M ({n:,})"
    return first


def model_params(model_dir: Path) -> Optional[str]:
    """Parameter count from the first existing :data:`PARAM_FILES` file."""
    for name in PARAM_FILES:
        path = model_dir / name
        if path.is_file():
            return format_params(path.read_text(encoding="utf-8", errors="replace"))
    return None


def model_command(model_dir: Path) -> Optional[str]:
    """The command that trained the model (``run_command.txt``, written by the stage driver)."""
    path = model_dir / COMMAND_FILE
    if path.is_file():
        text = path.read_text(encoding="utf-8", errors="replace").strip()
        return text or None
    return None


# ---------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------
def _cell(text: str) -> str:
    """Make ``text`` safe inside a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: List[ResultRow]) -> List[str]:
    """A markdown score table."""
    header = "|dataset|" + "|".join(ScoreSummary.COLUMNS) + "|"
    sep = "|" + "---|" * (len(ScoreSummary.COLUMNS) + 1)
    body = [f"|{r.decode}/{r.dataset}|" + "|".join(r.summary.row()) + "|" for r in rows]
    return [header, sep, *body]


def display_model_dir(exp_dir: Path, model: str, out_dir: Path) -> str:
    """How a model dir is named in a heading: relative to RESULTS.md when possible."""
    model_dir = (exp_dir / model).resolve()
    try:
        return model_dir.relative_to(out_dir.resolve()).as_posix()
    except ValueError:
        return f"{exp_dir.resolve().name}/{model}"


def render(
    rows: List[ResultRow],
    exp_dir: Path,
    out_path: Path,
    env: List[str],
    command: Optional[str],
    stage_times: Optional[List[StageTime]],
    title: Optional[str],
) -> str:
    """Build the whole RESULTS.md text."""
    lines: List[str] = ["<!-- Generated by python -m espnet_lw.bin.make_results -->", "# RESULTS"]
    if title:
        lines += ["", title]
    lines += ["", *env, ""]

    lines += ["## Command", ""]
    if command:
        lines += ["```sh", command, "```"]
    else:
        lines.append("not recorded (pass --command)")
    lines.append("")

    lines += ["## Stage wall times", ""]
    if stage_times:
        lines += ["|stage|description|seconds|time|status|", "|---|---|---|---|---|"]
        for st in stage_times:
            lines.append(
                f"|{_cell(st.stage)}|{_cell(st.description)}|{st.seconds:.1f}|"
                f"{human_duration(st.seconds)}|{_cell(st.status)}|"
            )
        total = sum(st.seconds for st in stage_times)
        lines.append(f"|total||{total:.1f}|{human_duration(total)}||")
    else:
        lines.append("not available")
    lines.append("")

    models = sorted({r.model for r in rows})
    for model in models:
        lines.append(f"## {display_model_dir(exp_dir, model, out_path.parent)}")
        params = model_params(exp_dir / model)
        trained_by = model_command(exp_dir / model)
        if params or trained_by:
            lines.append("")
        if trained_by:
            lines.append(f"- trained by: `{trained_by}`")
        if params:
            lines.append(f"- number of parameters: {params}")
        for score_type in SCORE_TYPES:
            selected = [r for r in rows if r.model == model and r.score_type == score_type]
            if selected:
                lines += ["", f"### {score_type.upper()}", "", *table(selected)]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def keep_marked_sections(out_path: Path, text: str) -> str:
    """Append the ``<!-- NAME:begin -->...<!-- NAME:end -->`` blocks of the existing file."""
    if not out_path.is_file():
        return text
    old = out_path.read_text(encoding="utf-8", errors="replace")
    for name in KEPT_SECTIONS:
        begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
        i, j = old.find(begin), old.find(end)
        if i != -1 and j > i and begin not in text:
            text = text.rstrip("\n") + "\n\n" + old[i : j + len(end)] + "\n"
    return text


# ---------------------------------------------------------------------------
# the whole job
# ---------------------------------------------------------------------------
def write_results(
    exp_dir: Path,
    out_path: Path,
    command: Optional[str] = None,
    stage_times_path: Optional[Path] = None,
    title: Optional[str] = None,
    date: Optional[str] = None,
    hardware: Optional[str] = None,
) -> List[ResultRow]:
    """Write ``out_path`` (RESULTS.md) from the sclite results under ``exp_dir``; returns its rows.

    ``stage_times_path``: the stage wall-time TSV (default ``EXP_DIR/stage_times.tsv``, left out
    when missing; a missing file given explicitly is a warning). ``date``: default now.
    The marked sections other tools own (:data:`KEPT_SECTIONS`) of an existing file are kept.
    """
    if not exp_dir.is_dir():
        raise UserError("experiment directory not found", path=str(exp_dir), fix="check --exp_dir")
    rows = collect_results(exp_dir)
    if not rows:
        raise UserError(
            "no scoring results (*/decode_*/*/score_{wer,cer}/result.txt) found",
            path=str(exp_dir),
            fix="run the scoring stage (python -m espnet_lw.bin.score_sclite) first",
        )

    stage_times: Optional[List[StageTime]] = None
    st_path = stage_times_path if stage_times_path is not None else exp_dir / "stage_times.tsv"
    if st_path.is_file():
        stage_times = read_stage_times(st_path)
    elif stage_times_path is not None:
        logging.warning("%s: stage-times file not found; RESULTS.md will say 'not available'", st_path)

    date = date or datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    repo_dir = out_path.resolve().parent
    while not repo_dir.exists():
        repo_dir = repo_dir.parent
    env = environment_lines(repo_dir, date, hardware)
    text = render(rows, exp_dir, out_path, env, command, stage_times, title)
    text = keep_marked_sections(out_path, text)
    atomic_write_text(out_path, text)
    n_models = len({r.model for r in rows})
    logging.info("wrote %s (%d model(s), %d table row(s))", out_path, n_models, len(rows))
    return rows
