#!/usr/bin/env python3
"""Build a small, self-contained recipe copy for a GPU check of stages 10-13 (--ngpu 1, AMP).

    local/gpu_check_prepare.py --out DIR [--repeat 10] [--clips 4] [--max_mb 30] [--dev_utts 100]

Run from a mini_synth recipe dir whose stages 1-5 have run (dump/raw/train, dump/raw/dev and the
token list exist). DIR gets run.sh, db.sh, local/ and links to lw.sh and conf/ (relative, into this
checkout, so DIR must sit inside the checkout to travel with it), and:

* dump/raw/train: long utterances (LibriSpeech-like, ~11 s) made by joining ``--clips`` consecutive
  training clips of one speaker (sox), until ``--max_mb`` of FLAC; the list names each ``--repeat``
  times under distinct ids (rN-...), so an epoch is long enough to time while little audio travels;
* dump/raw/dev: the first ``--dev_utts`` dev clips, copied;
* data/train, data/dev (the same lists) and data/token_list (copied);
* conf_gpu/student_r67.yaml: conf/student_r67.yaml with EncRL 1 + fine-tune 2 epochs, baselines 3, and
  conf_gpu/student_r67_nokd.yaml: the same without KD in the fine-tune (for EncRL on the fly).

Then, on the GPU machine: ``cd DIR && local/gpu_check.sh`` (its --help says what it runs).
Nothing here needs a GPU or torch.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

from espnet_lw.data.kaldi_dir import read_kv, utt2spk_to_spk2utt, write_kv

HERE = Path(__file__).resolve().parent.parent  # the recipe dir this script belongs to


def write_set(d: Path, rows: list) -> None:
    """rows: (utt, spk, wav path relative to the recipe dir, text, samples) -> a formatted data dir."""
    d.mkdir(parents=True, exist_ok=True)
    utt2spk = {utt: spk for utt, spk, _, _, _ in rows}
    for name, col in (("wav.scp", 2), ("text", 3), ("utt2num_samples", 4)):
        write_kv(d / name, {r[0]: r[col] for r in rows})
    write_kv(d / "utt2spk", utt2spk)
    write_kv(d / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    (d / "feats_type").write_text("raw\n", encoding="utf-8")
    (d / "audio_format").write_text("flac\n", encoding="utf-8")


def samples_of(path: Path) -> int:
    out = subprocess.run(["soxi", "-s", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.strip())


def prepare(src: Path, out: Path, repeat: int, clips: int, max_mb: float, dev_utts: int) -> dict:
    for need in ("dump/raw/train/wav.scp", "dump/raw/dev/wav.scp", "data/token_list"):
        if not (src / need).exists():
            raise SystemExit(f"ERROR: {src / need} not found: run ./run.sh --stage 1 --stop_stage 5 in {src} first")
    if out.exists():
        raise SystemExit(f"ERROR: {out} exists: remove it or give another --out (nothing is overwritten)")
    if shutil.which("sox") is None or shutil.which("soxi") is None:
        raise SystemExit("ERROR: sox/soxi not found: apt-get install sox")
    out.mkdir(parents=True)
    for f in ("run.sh", "db.sh"):
        shutil.copy2(HERE / f, out / f)
    shutil.copytree(HERE / "local", out / "local")
    repo = HERE.parent.parent.parent
    os.symlink(os.path.relpath(repo / "egs2" / "TEMPLATE" / "lw1" / "lw.sh", out), out / "lw.sh")
    os.symlink(os.path.relpath(repo / "conf", out), out / "conf")
    shutil.copytree(src / "data" / "token_list", out / "data" / "token_list")

    wav = read_kv(src / "dump/raw/train/wav.scp")
    text = read_kv(src / "dump/raw/train/text")
    spk_of = read_kv(src / "dump/raw/train/utt2spk")
    by_spk: "OrderedDict[str, list]" = OrderedDict()
    for utt in wav:
        by_spk.setdefault(spk_of[utt], []).append(utt)
    data_dir = out / "dump/raw/org/train/data"
    data_dir.mkdir(parents=True)
    longs, size = [], 0
    for spk, utts in by_spk.items():
        for i in range(0, len(utts) - clips + 1, clips):
            if size > max_mb * 1e6:
                break
            group = utts[i:i + clips]
            uid = f"{spk}-L{i // clips:03d}"
            dst = data_dir / f"{uid}.flac"
            subprocess.run(["sox"] + [str(src / wav[u]) for u in group] + [str(dst)], check=True)
            size += dst.stat().st_size
            longs.append((uid, spk, str(dst.relative_to(out)), " ".join(text[u] for u in group), samples_of(dst)))
    if not longs:
        raise SystemExit(f"ERROR: no speaker of {src}/dump/raw/train has {clips} clips: lower --clips")
    rows = [(f"r{k}-{u}", f"r{k}-{s}", w, t, n) for k in range(repeat) for u, s, w, t, n in longs]
    write_set(out / "dump/raw/train", rows)

    dwav = read_kv(src / "dump/raw/dev/wav.scp")
    dtext = read_kv(src / "dump/raw/dev/text")
    dspk = read_kv(src / "dump/raw/dev/utt2spk")
    (out / "dump/raw/dev/data").mkdir(parents=True)
    drows = []
    for utt in list(dwav)[:dev_utts]:
        dst = out / "dump/raw/dev/data" / Path(dwav[utt]).name
        shutil.copy2(src / dwav[utt], dst)
        drows.append((utt, dspk[utt], str(dst.relative_to(out)), dtext[utt], samples_of(dst)))
    write_set(out / "dump/raw/dev", drows)
    for s in ("train", "dev"):
        shutil.copytree(out / "dump/raw" / s, out / "data" / s,
                        ignore=shutil.ignore_patterns("data", "utt2num_samples", "feats_type", "audio_format"))

    conf = (HERE / "conf" / "student_r67.yaml").read_text(encoding="utf-8")
    conf = conf.replace("max_epoch: 7", "max_epoch: 2").replace("max_epoch: 8", "max_epoch: 3")
    (out / "conf_gpu").mkdir()
    (out / "conf_gpu" / "student_r67.yaml").write_text(
        "# GPU check copy of conf/student_r67.yaml (local/gpu_check_prepare.py): EncRL 1 + fine-tune 2 epochs, "
        "baselines 3\n" + conf, encoding="utf-8")
    # the same without KD in the fine-tune: EncRL with the reference on the fly needs no target cache
    nokd = "\n".join(line for line in conf.splitlines() if not line.startswith("    kd: {")) + "\n"
    (out / "conf_gpu" / "student_r67_nokd.yaml").write_text(
        "# GPU check copy of conf/student_r67.yaml without finetune.kd (local/gpu_check_prepare.py): EncRL 1 + "
        "fine-tune 2 epochs, baselines 3\n" + nokd, encoding="utf-8")
    seconds = sum(r[4] for r in rows) / 16000
    return {"long_utts": len(longs), "flac_mb": round(size / 1e6, 1), "train_rows": len(rows),
            "train_hours": round(seconds / 3600, 2), "mean_seconds": round(seconds / len(rows), 1),
            "dev_utts": len(drows)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="the recipe copy to create (must not exist)")
    p.add_argument("--src", type=Path, default=Path("."), help="the finished mini_synth recipe dir [.]")
    p.add_argument("--repeat", type=int, default=10, help="times each long utterance is listed [10]")
    p.add_argument("--clips", type=int, default=4, help="training clips joined into one utterance [4]")
    p.add_argument("--max_mb", type=float, default=30.0, help="FLAC megabytes of long utterances [30]")
    p.add_argument("--dev_utts", type=int, default=100, help="dev clips copied [100]")
    args = p.parse_args(argv)
    for name in ("repeat", "clips", "dev_utts"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    summary = prepare(args.src.resolve(), args.out.resolve(), args.repeat, args.clips, args.max_mb, args.dev_utts)
    print(" ".join(f"{k}={v}" for k, v in summary.items()))


if __name__ == "__main__":
    sys.exit(main())
