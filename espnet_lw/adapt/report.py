"""The before/after table of an adaptation: WER (and CER) of the original and the adapted model.

Reads sclite's ``result.txt`` of each set from ``<model>/<decode tag>/<set>/score_wer`` (the
original model, scored by stages 12-13 when its test sets included the set; ``-`` when not) and
from ``<adapt dir>/<decode tag>/<set>/score_wer`` (stage 16), and writes ``adapt_results.md`` and
``adapt_results.json`` into the adapt dir.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from espnet_lw.scoring import parse_result
from espnet_lw.utils.io import atomic_write_text

PathLike = Union[str, Path]


def error_rate(decode_dir: Path, dset: str, kind: str = "wer") -> Optional[float]:
    """sclite's error rate (``kind`` wer / cer) of ``<decode_dir>/<dset>``; ``None`` when not scored."""
    f = decode_dir / dset / f"score_{kind}" / "result.txt"
    return parse_result(f).err if f.is_file() else None


def relative_change(before: Optional[float], after: Optional[float]) -> Optional[float]:
    """``100 * (after - before) / before``; ``None`` when either is unknown or ``before`` is 0."""
    if before is None or after is None or before == 0:
        return None
    return 100.0 * (after - before) / before


def fmt_number(v: Optional[float], digits: int = 1) -> str:
    """``v`` with ``digits`` decimals, ``-`` when unknown."""
    return "-" if v is None else f"{v:.{digits}f}"


def fmt_signed(v: Optional[float]) -> str:
    """``v`` with a sign and one decimal, ``-`` when unknown."""
    return "-" if v is None else f"{v:+.1f}"


def _rel(before: Optional[float], after: Optional[float]) -> str:
    return fmt_signed(relative_change(before, after))


def collect(model_dir: PathLike, adapt_dir: PathLike, decode_tag: str, sets: Sequence[str]) -> List[Dict]:
    """One row per set: WER/CER before and after (None when not scored)."""
    before_dir, after_dir = Path(model_dir) / decode_tag, Path(adapt_dir) / decode_tag
    rows = []
    for dset in sets:
        rows.append({
            "set": dset,
            "wer_before": error_rate(before_dir, dset, "wer"), "wer_after": error_rate(after_dir, dset, "wer"),
            "cer_before": error_rate(before_dir, dset, "cer"), "cer_after": error_rate(after_dir, dset, "cer"),
        })
    return rows


def render(rows: List[Dict], model_dir: PathLike, adapt_dir: PathLike, train_seconds: Optional[float],
           meta: Dict) -> str:
    """Markdown: what was adapted, the data, the table."""
    data = meta.get("data", {})
    cfg = meta.get("options", {}).get("config", {})
    lines = [
        f"# Adaptation of {model_dir}", "",
        f"- adapted model: {adapt_dir}",
        f"- adapt data: {meta.get('options', {}).get('adapt_data')}: {data.get('field_utts')} utterances "
        f"({(data.get('field_seconds') or 0) / 60:.1f} min) for training, {data.get('valid_utts')} held out",
        f"- replay: {100 * (cfg.get('replay') or 0):.0f} % of every batch "
        f"({data.get('replay_utts')} utterances of the original training data)",
        f"- epochs {cfg.get('epochs')}, lr {cfg.get('lr')}, freeze {cfg.get('freeze') or 'none'}, "
        f"noise {cfg.get('noise_scp') or 'none'}",
    ]
    if train_seconds is not None:
        lines.append(f"- adaptation training time: {train_seconds:.0f} s")
    lines += ["", "|set|WER before|WER after|rel. change %|CER before|CER after|",
              "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"|{r['set']}|{fmt_number(r['wer_before'])}|{fmt_number(r['wer_after'])}|"
                     f"{_rel(r['wer_before'], r['wer_after'])}|{fmt_number(r['cer_before'])}|"
                     f"{fmt_number(r['cer_after'])}|")
    if any(r["wer_before"] is None for r in rows):
        lines += ["", "`-` before: the original model was not scored on that set (run stages 12-13 of it "
                  "with that set in --test_sets)."]
    return "\n".join(lines) + "\n"


def write_report(model_dir: PathLike, adapt_dir: PathLike, decode_tag: str, sets: Sequence[str],
                 train_seconds: Optional[float] = None) -> str:
    """Write ``adapt_results.md`` / ``.json`` into ``adapt_dir``; returns the markdown."""
    adapt_dir = Path(adapt_dir)
    meta_file = adapt_dir / "adapt.json"
    meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
    rows = collect(model_dir, adapt_dir, decode_tag, sets)
    text = render(rows, model_dir, adapt_dir, train_seconds, meta)
    atomic_write_text(adapt_dir / "adapt_results.md", text)
    payload = {"model_dir": str(model_dir), "adapt_dir": str(adapt_dir), "decode_tag": decode_tag,
               "train_seconds": train_seconds, "rows": rows, "data": meta.get("data")}
    atomic_write_text(adapt_dir / "adapt_results.json", json.dumps(payload, indent=2) + "\n")
    return text
