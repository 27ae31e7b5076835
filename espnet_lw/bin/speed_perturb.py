"""Speed-perturb a Kaldi data directory (copies at several speeds, combined).

Usage::

    python -m espnet_lw.bin.speed_perturb [--factors "0.9 1.0 1.1"] [--overwrite] SRC DST

For each factor ``f`` every utterance, speaker and (with ``segments``)
recording id gets the prefix ``sp<f>-`` (the factor spelled as given, e.g.
``sp0.9-``); factor 1.0 keeps the original ids.  Audio is not touched here:
``wav.scp`` entries become ``sox`` pipes that are run later (stage 3,
``format_wav_scp``)::

    /a/x.flac               ->  sox -t flac /a/x.flac -t wav - speed 0.9 |
    sph2pipe -f wav x.sph |  ->  sph2pipe -f wav x.sph | sox -t wav - -t wav - speed 0.9 |

``sox speed f`` changes tempo and pitch and keeps the sample rate, so an
utterance lasts ``1/f`` times as long: ``segments`` times are divided by
``f`` and ``utt2dur``/``reco2dur`` scaled likewise; ``utt2num_samples``,
``utt2num_frames`` and ``feats.scp`` describe the unperturbed audio and are
not carried (they are recomputed by stage 3).  ``text``, ``utt2spk``,
``utt2*`` and ``spk2*`` tables are carried with the new ids, ``spk2utt`` is
regenerated, everything is written sorted and the result is validated.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
from pathlib import Path
from typing import Dict, List, Tuple

from espnet_lw.data.kaldi_dir import (
    RECO,
    SPK,
    UTT,
    atomic_output_dir,
    check_valid_or_raise,
    list_tables,
    parse_segment,
    read_data_dir_tables,
    utt2spk_to_spk2utt,
    validate_data_dir,
    write_kv,
)
from espnet_lw.utils.cli import UserError, run_main, setup_logging

#: file extension -> sox type name (``-t``)
SOX_TYPES = {
    "wav": "wav", "flac": "flac", "sph": "sph", "nist": "sph", "wv1": "sph", "wv2": "sph",
    "mp3": "mp3", "ogg": "vorbis", "opus": "opus", "aif": "aiff", "aiff": "aiff", "au": "au",
}
#: tables that describe the unperturbed signal and cannot be carried
NOT_CARRIED = ("utt2num_samples", "utt2num_frames", "reco2num_samples", "feats.scp", "cmvn.scp")
#: tables holding durations in seconds (scaled by 1/f)
DURATION_TABLES = ("utt2dur", "reco2dur")


def parse_factors(spec: str) -> List[Tuple[str, float]]:
    """Parse ``"0.9 1.0 1.1"`` (spaces or commas) into ``[(label, value), ...]``."""
    out: List[Tuple[str, float]] = []
    for tok in re.split(r"[\s,]+", spec.strip()):
        if not tok:
            continue
        try:
            val = float(tok)
        except ValueError:
            raise UserError(f"--factors: '{tok}' is not a number", fix='use e.g. --factors "0.9 1.0 1.1"') from None
        if not 0.1 <= val <= 10:
            raise UserError(f"--factors: {tok} is out of range (0.1 .. 10)")
        if any(abs(v - val) < 1e-9 for _, v in out):
            raise UserError(f"--factors: {tok} is given twice")
        out.append((tok, val))
    if not out:
        raise UserError("--factors is empty", fix='use e.g. --factors "0.9 1.0 1.1"')
    return out


def perturbed_wav_entry(value: str, factor_label: str, wav_scp: str, key: str) -> str:
    """Turn a ``wav.scp`` value into a command producing the sped-up WAV on stdout."""
    value = value.strip()
    if value.endswith("|"):
        return f"{value[:-1].rstrip()} | sox -t wav - -t wav - speed {factor_label} |"
    if re.search(r"\.(ark|scp):\d+$", value) or (not os.path.exists(value) and re.search(r":\d+$", value)):
        raise UserError(
            f"'{key}': archive entries ({value}) cannot be speed-perturbed with sox",
            wav_scp,
            "use plain audio files or 'cmd |' pipes in wav.scp",
        )
    ext = value.rsplit(".", 1)[-1].lower() if "." in os.path.basename(value) else ""
    type_opt = f"-t {SOX_TYPES[ext]} " if ext in SOX_TYPES else ""
    return f"sox {type_opt}{shlex.quote(value)} -t wav - speed {factor_label} |"


def _fmt_seconds(x: float) -> str:
    s = f"{x:.4f}".rstrip("0").rstrip(".")
    return s or "0"


def speed_perturb(src: Path, dst: Path, factors: List[Tuple[str, float]], overwrite: bool = False) -> Dict[str, int]:
    """Write the combined perturbed copy of ``src`` to ``dst``; return ``{"utts": n, ...}``."""
    if not src.is_dir():
        raise UserError("source data directory does not exist", str(src))
    no_text = not (src / "text").is_file()
    check_valid_or_raise(src, no_text=no_text, allow_empty_text=True)
    kinds = list_tables(src)
    has_segments = "segments" in kinds
    tables = read_data_dir_tables(src)
    skipped = [n for n in tables if n in NOT_CARRIED]
    if skipped:
        logging.info("not carried (recomputed in stage 3): %s", ", ".join(skipped))

    out: Dict[str, Dict[str, str]] = {n: {} for n in tables if n not in NOT_CARRIED}
    for label, f in factors:
        prefix = "" if f == 1.0 else f"sp{label}-"
        for name, table in tables.items():
            if name in NOT_CARRIED:
                continue
            kind = kinds[name]
            target = out[name]
            for key, value in table.items():
                new_key = prefix + key
                if name == "utt2spk":
                    value = prefix + value
                elif name == "segments" and f != 1.0:
                    seg = parse_segment(value)
                    value = f"{prefix}{seg.reco} {_fmt_seconds(seg.start / f)} {_fmt_seconds(seg.end / f)}"
                elif name == "wav.scp" and f != 1.0:
                    value = perturbed_wav_entry(value, label, str(src / name), key)
                elif name in DURATION_TABLES and f != 1.0:
                    value = _fmt_seconds(float(value) / f)
                if kind not in (UTT, SPK, RECO):  # pragma: no cover - list_tables filters
                    continue
                target[new_key] = value

    with atomic_output_dir(dst, overwrite=overwrite) as tmp:
        for name, table in out.items():
            write_kv(tmp / name, table)
        write_kv(tmp / "spk2utt", utt2spk_to_spk2utt(out["utt2spk"]))
        problems = validate_data_dir(tmp, no_text=no_text, allow_empty_text=True)
        if problems:  # would be a bug in this tool, not user error
            raise RuntimeError("speed-perturbed data dir does not validate:\n" + "\n".join(problems))
    n_src = len(tables["utt2spk"])
    return {"src_utts": n_src, "utts": len(out["utt2spk"]), "speakers": len(set(out["utt2spk"].values())),
            "segments": int(has_segments)}


def get_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    p = argparse.ArgumentParser(
        prog="python -m espnet_lw.bin.speed_perturb",
        description="Make a speed-perturbed copy of a Kaldi data dir (ids prefixed 'sp<f>-', "
        "wav.scp entries turned into sox pipes, segments rescaled); all factors are combined into DST.",
    )
    p.add_argument("src", metavar="SRC", help="source data directory")
    p.add_argument("dst", metavar="DST", help="output data directory (must not exist unless --overwrite)")
    p.add_argument("--factors", default="0.9 1.0 1.1",
                   help='speed factors, space or comma separated (default: "0.9 1.0 1.1"); '
                   "1.0 keeps the original ids")
    p.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    p.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv=None) -> None:
    """Entry point; see the module docstring."""
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    factors = parse_factors(args.factors)
    stats = speed_perturb(Path(args.src), Path(args.dst), factors, overwrite=args.overwrite)
    logging.info(
        "%s -> %s: %d utterances x factors %s = %d utterances, %d speakers",
        args.src, args.dst, stats["src_utts"], " ".join(lbl for lbl, _ in factors), stats["utts"], stats["speakers"],
    )


if __name__ == "__main__":
    run_main(main)
