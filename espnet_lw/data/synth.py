"""Build "mini_synth": a small synthetic English speech corpus in LibriSpeech layout.

Speech is synthesised with ``espeak-ng`` (many accents, voice variants,
speaking rates and pitches), resampled with ``sox`` and stored as 16 kHz,
mono, 16-bit FLAC exactly like LibriSpeech::

    OUT/SPEAKERS.TXT                    speaker table (';' comment header)
    OUT/README.TXT                      how the corpus was made + statistics
    OUT/<split>/<spk>/<chapter>/<spk>-<chapter>-<NNNN>.flac
    OUT/<split>/<spk>/<chapter>/<spk>-<chapter>.trans.txt

Splits:

* ``train``: accents en-us, en-gb, en-gb-x-rp, en-gb-x-gbclan, en-us-nyc;
* ``dev`` / ``test``: the same accents, but (accent, voice variant) pairs,
  rates and pitches never used in ``train`` -- unseen "speakers";
* ``field``: accents never heard in ``train`` (Scottish, Caribbean, West
  Midlands) plus deterministic additive noise at a fixed SNR.

The build is deterministic for a given ``(size, seed, snr_db)``: the same
sentences, speakers and noise, and (with the same espeak-ng/sox versions)
byte-identical FLAC files.  It is resumable: every FLAC is written atomically,
finished files are kept, and a marker file (``.complete``) written last makes a
finished corpus a no-op on the next call.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from espnet_lw.data.sentences import SentenceGenerator
from espnet_lw.utils.cli import UserError
from espnet_lw.utils.io import atomic_write_text

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FORMAT_VERSION = 2  # bump whenever the audio processing changes
MARKER = ".complete"
PARAMS_FILE = ".mini_synth.json"
SPLITS = ("train", "dev", "test", "field")

#: accents (espeak-ng languages) used for train/dev/test speakers
TRAIN_ACCENTS = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-x-gbclan", "en-us-nyc")
#: accents only used for the ``field`` split (never heard in train)
FIELD_ACCENTS = ("en-gb-scotland", "en-029", "en-gb-x-gbcwmd")
ACCENT_NAMES = {
    "en-us": "General American",
    "en-gb": "British English",
    "en-gb-x-rp": "Received Pronunciation",
    "en-gb-x-gbclan": "Lancaster",
    "en-us-nyc": "New York City",
    "en-gb-scotland": "Scottish",
    "en-029": "Caribbean",
    "en-gb-x-gbcwmd": "West Midlands",
}
#: espeak-ng voice variants (files under espeak-ng-data/voices/!v) by sex;
#: robotic / whispering / extreme variants are left out on purpose.
VARIANTS = {
    "F": ("f1", "f2", "f3", "f4", "f5", "Annie", "Alicia", "aunty", "belinda",
          "linda", "steph", "steph2", "steph3", "grandma", "anika", "Andrea"),
    "M": ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "klatt", "klatt3", "adam",
          "Andy", "Denis", "Diogo", "Hugo", "Lee", "michel", "miguel", "sandro",
          "travis", "victor", "max", "paul", "rob", "robert", "edward", "john",
          "david", "benjamin", "boris", "caleb", "norbert", "pablo", "quincy",
          "Gene", "Mario", "Michael", "Mike", "zac"),
}
RATE_RANGE = (140, 190)  # espeak -s, words per minute
PITCH_RANGE = (30, 70)  # espeak -p, 0..99 (50 = variant default)
LEVEL_DB_RANGE = (-26.0, -18.0)  # per-speaker speech RMS level, dBFS
CLEAN_FLOOR_SNR_DB = 55.0  # faint noise floor on clean splits (no digital silence)


@dataclass(frozen=True)
class SplitSize:
    """Speakers in a split and utterances per speaker."""

    speakers: int
    utts_per_speaker: int


#: corpus sizes; at ~3.5 s per utterance: default ~1.5 h train, ~9 min dev/test/field
SIZES: dict[str, dict[str, SplitSize]] = {
    "tiny": {"train": SplitSize(4, 10), "dev": SplitSize(2, 4),
             "test": SplitSize(2, 4), "field": SplitSize(2, 4)},
    "small": {"train": SplitSize(20, 19), "dev": SplitSize(4, 12),
              "test": SplitSize(4, 12), "field": SplitSize(3, 14)},
    "default": {"train": SplitSize(44, 40), "dev": SplitSize(8, 21),
                "test": SplitSize(8, 21), "field": SplitSize(9, 19)},
}


@dataclass
class Speaker:
    """One synthetic speaker = espeak voice + variant + rate + pitch (+ level)."""

    id: int
    split: str
    sex: str
    accent: str
    variant: str
    rate: int
    pitch: int
    level_db: float
    chapters: list = field(default_factory=list)

    @property
    def voice(self) -> str:
        return f"{self.accent}+{self.variant}"


@dataclass(frozen=True)
class Job:
    """Everything needed to synthesise one utterance (picklable)."""

    uttid: str
    path: str
    spoken: str
    voice: str
    rate: int
    pitch: int
    level_db: float
    snr_db: float | None
    seed: int


@dataclass
class Plan:
    """The full, deterministic description of a corpus."""

    speakers: list
    texts: dict  # uttid -> transcript
    jobs: list


# --------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------
INSTALL_FIX = "install the Debian packages espeak-ng sox flac (apt-get install espeak-ng sox flac)"


def find_tools() -> dict[str, str]:
    """Absolute paths of espeak-ng and sox, or a :class:`UserError` naming the missing one."""
    tools = {}
    for name in ("espeak-ng", "sox"):
        path = shutil.which(name)
        if path is None:
            raise UserError(f"required program '{name}' was not found on PATH", None, INSTALL_FIX)
        tools[name] = path
    return tools


def espeak_info(espeak: str) -> tuple[str, Path | None]:
    """(version line, data directory) of the installed espeak-ng."""
    out = subprocess.run([espeak, "--version"], capture_output=True, text=True).stdout.strip()
    m = re.search(r"Data at:\s*(\S+)", out)
    return out, (Path(m.group(1)) if m else None)


def check_voices(espeak: str, accents, variants) -> None:
    """Fail early (naming the voice) if an accent or variant is missing."""
    out = subprocess.run([espeak, "--voices=en"], capture_output=True, text=True).stdout
    langs = {line.split()[1] for line in out.splitlines()[1:] if len(line.split()) > 1}
    for acc in accents:
        if acc not in langs:
            raise UserError(f"espeak-ng has no voice for language '{acc}'",
                            None, "install a complete espeak-ng (Debian package espeak-ng, >= 1.51)")
    _, data_dir = espeak_info(espeak)
    if data_dir is not None and (data_dir / "voices" / "!v").is_dir():
        for var in variants:
            if not (data_dir / "voices" / "!v" / var).is_file():
                raise UserError(f"espeak-ng voice variant '{var}' is missing",
                                str(data_dir / "voices" / "!v"),
                                "install a complete espeak-ng-data (Debian package espeak-ng-data)")


# --------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------
def _utt_seed(seed: int, uttid: str) -> int:
    digest = hashlib.sha256(f"mini_synth-{seed}-{uttid}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def make_plan(size: str, seed: int = 0, snr_db: float = 10.0) -> Plan:
    """Decide speakers, chapters, utterance ids and texts (no audio).

    The result depends only on ``(size, seed, snr_db)``.
    """
    if size not in SIZES:
        raise UserError(f"unknown size '{size}'", None, f"use one of {', '.join(SIZES)}")
    sizes = SIZES[size]
    rng = random.Random(f"mini_synth-speakers-{seed}")
    total_spk = sum(s.speakers for s in sizes.values())
    spk_ids = rng.sample(range(100, 9000), total_spk)
    chapter_ids = iter(rng.sample(range(10000, 300000), 2 * total_spk))
    used_pairs: set = set()
    used_combos: set = set()
    speakers: list[Speaker] = []
    train_accents: list[str] = []
    for split in SPLITS:
        n = sizes[split].speakers
        if split == "field":
            accents = list(FIELD_ACCENTS)
        elif split == "train":
            accents = list(TRAIN_ACCENTS)
        else:  # dev / test: only accents actually present in train
            accents = sorted(set(train_accents), key=TRAIN_ACCENTS.index)
        offset = rng.randrange(len(accents))
        for i in range(n):
            accent = accents[(i + offset) % len(accents)] if split != "train" else accents[i % len(accents)]
            sex = "F" if len(speakers) % 2 == 0 else "M"
            candidates = [v for v in VARIANTS[sex] if (accent, v) not in used_pairs]
            variant = rng.choice(candidates)
            while True:
                rate = rng.randint(*RATE_RANGE)
                pitch = rng.randint(*PITCH_RANGE)
                if (accent, variant, rate, pitch) not in used_combos:
                    break
            used_pairs.add((accent, variant))
            used_combos.add((accent, variant, rate, pitch))
            level = round(rng.uniform(*LEVEL_DB_RANGE), 1)
            spk = Speaker(spk_ids[len(speakers)], split, sex, accent, variant, rate, pitch, level)
            if split == "train":
                train_accents.append(accent)
            speakers.append(spk)

    gen = SentenceGenerator(seed)
    stream = gen.unique()
    texts: dict[str, str] = {}
    jobs: list[Job] = []
    for spk in speakers:
        n_utt = sizes[spk.split].utts_per_speaker
        n_chap = 2 if n_utt >= 20 else 1
        per = [n_utt // n_chap + (1 if c < n_utt % n_chap else 0) for c in range(n_chap)]
        for count in per:
            chap = next(chapter_ids)
            spk.chapters.append(chap)
            for k in range(count):
                uttid = f"{spk.id}-{chap}-{k:04d}"
                sent = next(stream)
                texts[uttid] = sent.transcript
                rel = f"{spk.split}/{spk.id}/{chap}/{uttid}.flac"
                jobs.append(Job(uttid, rel, sent.spoken, spk.voice, spk.rate, spk.pitch,
                                spk.level_db, snr_db if spk.split == "field" else None,
                                _utt_seed(seed, uttid)))
    return Plan(speakers, texts, jobs)


# --------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------
def _shaped_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Pink-ish (1/f) noise with a little white noise mixed in, unit RMS."""
    white = rng.standard_normal(n)
    spec = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    spec /= np.sqrt(np.maximum(freqs, 60.0))
    spec[0] = 0.0  # no DC offset
    pink = np.fft.irfft(spec, n)
    pink /= np.sqrt(np.mean(pink ** 2)) + 1e-12
    noise = 0.9 * pink + 0.3 * (white - white.mean())
    return noise / (np.sqrt(np.mean(noise ** 2)) + 1e-12)


def synth_one(job: Job, out_dir: str, espeak: str = "espeak-ng", sox: str = "sox") -> tuple[str, int]:
    """Synthesise one utterance to ``out_dir/job.path``; returns (uttid, samples)."""
    env = dict(os.environ, LC_ALL="C")
    tts = subprocess.run(
        [espeak, "-v", job.voice, "-s", str(job.rate), "-p", str(job.pitch), "--stdout", job.spoken],
        capture_output=True, env=env)
    if tts.returncode != 0 or not tts.stdout:
        raise RuntimeError(f"espeak-ng failed for {job.uttid}: {tts.stderr.decode(errors='replace')}")
    res = subprocess.run(
        [sox, "-t", "wav", "-", "-t", "raw", "-e", "floating-point", "-b", "32", "-L",
         "-c", "1", "-r", str(SAMPLE_RATE), "-"],
        input=tts.stdout, capture_output=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"sox resampling failed for {job.uttid}: {res.stderr.decode(errors='replace')}")
    speech = np.frombuffer(res.stdout, dtype="<f4").astype(np.float64)
    rng = np.random.default_rng(job.seed)
    # normalise speech level: per-speaker level with a little per-utterance jitter
    rms = np.sqrt(np.mean(speech ** 2)) + 1e-12
    target = 10 ** ((job.level_db + rng.uniform(-1.5, 1.5)) / 20)
    speech *= target / rms
    lead = int(rng.uniform(0.05, 0.3) * SAMPLE_RATE)
    tail = int(rng.uniform(0.05, 0.2) * SAMPLE_RATE)
    x = np.concatenate([np.zeros(lead), speech, np.zeros(tail)])
    snr = job.snr_db if job.snr_db is not None else CLEAN_FLOOR_SNR_DB
    x += _shaped_noise(rng, len(x)) * target / 10 ** (snr / 20)
    peak = np.max(np.abs(x))
    if peak > 0.98:
        x *= 0.98 / peak
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype("<i2")
    dest = Path(out_dir) / job.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    enc = subprocess.run(
        [sox, "-t", "raw", "-e", "signed-integer", "-b", "16", "-L", "-c", "1",
         "-r", str(SAMPLE_RATE), "-", "-t", "flac", str(tmp)],
        input=pcm.tobytes(), capture_output=True, env=env)
    if enc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"sox FLAC encoding failed for {job.uttid}: {enc.stderr.decode(errors='replace')}")
    os.replace(tmp, dest)
    return job.uttid, len(pcm)


def flac_info(path: str | os.PathLike) -> tuple[int, int, int, int]:
    """(sample_rate, channels, bits_per_sample, total_samples) from a FLAC header."""
    with open(path, "rb") as f:
        head = f.read(42)
    if len(head) < 42 or head[:4] != b"fLaC" or (head[4] & 0x7F) != 0:
        raise ValueError(f"{path}: not a FLAC file (no STREAMINFO block)")
    info = head[8:42]
    bits = int.from_bytes(info[10:18], "big")
    sample_rate = bits >> 44
    channels = ((bits >> 41) & 0x7) + 1
    bps = ((bits >> 36) & 0x1F) + 1
    total = bits & ((1 << 36) - 1)
    return sample_rate, channels, bps, total


# --------------------------------------------------------------------------
# Corpus build
# --------------------------------------------------------------------------
def plan_fingerprint(plan: Plan) -> str:
    """SHA-256 over every job of the plan (texts, voices, paths, seeds)."""
    h = hashlib.sha256()
    for j in plan.jobs:
        h.update(json.dumps(asdict(j), sort_keys=True).encode())
        h.update(plan.texts[j.uttid].encode())
    return h.hexdigest()


def _params(size: str, seed: int, snr_db: float, plan: Plan) -> dict:
    """What identifies a build: a corpus made with other params must not be reused."""
    return {"format": FORMAT_VERSION, "size": size, "seed": seed, "snr_db": float(snr_db),
            "plan_sha256": plan_fingerprint(plan)}


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_complete(out: str | os.PathLike, size: str | None = None, seed: int | None = None,
                snr_db: float | None = None) -> bool:
    """True if ``out`` holds a finished corpus (matching the given parameters, if any)."""
    marker = _read_json(Path(out) / MARKER)
    if not marker:
        return False
    want = {"size": size, "seed": seed, "snr_db": None if snr_db is None else float(snr_db)}
    return all(v is None or marker.get(k) == v for k, v in want.items())


def _prepare_dir(out: Path, params: dict, overwrite: bool) -> bool:
    """Validate/prepare ``out``; returns True if it is already complete."""
    marker = _read_json(out / MARKER)
    if marker is not None:
        marker.pop("stats", None)
    existing = _read_json(out / PARAMS_FILE)
    if marker is not None and marker == params:
        return True
    ours = existing is not None or marker is not None
    if out.exists() and any(out.iterdir()):
        if not ours:
            raise UserError("directory exists, is not empty and is not a mini_synth corpus",
                            str(out), "choose another --out directory or remove this one")
        if existing != params or marker is not None:
            if not overwrite:
                raise UserError(
                    f"directory holds a mini_synth corpus built with different settings "
                    f"({existing or marker})", str(out),
                    "pass --overwrite to rebuild it, or choose another --out directory")
            logger.warning("removing the old corpus in %s (--overwrite)", out)
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / PARAMS_FILE, json.dumps(params, indent=1) + "\n")
    for stale in out.rglob("*.tmp*"):  # leftovers of an interrupted run
        stale.unlink()
    return False


def _progress(iterable, total: int, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a declared dependency
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit="utt", dynamic_ncols=True)


def _worker(args):
    job, out_dir, espeak, sox = args
    return synth_one(job, out_dir, espeak, sox)


def build_corpus(out: str | os.PathLike, size: str = "default", seed: int = 0, nj: int = 2,
                 snr_db: float = 10.0, overwrite: bool = False) -> dict:
    """Build (or resume, or skip) the corpus in ``out``; returns statistics.

    Raises :class:`UserError` for missing tools/voices or an unusable ``out``.
    """
    out = Path(out).resolve()
    plan = make_plan(size, seed, snr_db)
    params = _params(size, seed, snr_db, plan)
    if _prepare_dir(out, params, overwrite):
        logger.info("corpus %s is already complete (size=%s seed=%d); nothing to do", out, size, seed)
        return json.loads((out / MARKER).read_text()).get("stats", {})
    tools = find_tools()
    check_voices(tools["espeak-ng"], TRAIN_ACCENTS + FIELD_ACCENTS,
                 sorted({s.variant for s in plan.speakers}))
    todo = [j for j in plan.jobs if not (out / j.path).is_file()]
    logger.info("mini_synth size=%s seed=%d: %d utterances, %d to synthesise with %d job(s) -> %s",
                size, seed, len(plan.jobs), len(todo), nj, out)
    start = time.time()
    args = [(j, str(out), tools["espeak-ng"], tools["sox"]) for j in todo]
    if nj > 1 and len(args) > 1:
        # Threads, not processes: the work is done by espeak-ng and sox subprocesses, and forking
        # a process that already runs torch/OpenMP threads (as a test session does) can hang.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=nj) as pool:
            for _ in _progress(pool.map(_worker, args), len(args), "synth"):
                pass
    else:
        for a in _progress(args, len(args), "synth"):
            _worker(a)
    synth_s = time.time() - start

    samples = {j.uttid: flac_info(out / j.path)[3] for j in plan.jobs}
    _write_transcripts(out, plan)
    stats = _stats(plan, samples)
    version, _ = espeak_info(tools["espeak-ng"])
    _write_speakers(out, plan, samples, params, version)
    _write_readme(out, plan, stats, params, version)
    marker = dict(params, stats=stats)
    atomic_write_text(out / MARKER, json.dumps(marker, indent=1) + "\n")
    logger.info("synthesised %d utterances in %.1f s", len(todo), synth_s)
    for split in SPLITS:
        s = stats[split]
        logger.info("  %-5s %3d speakers %5d utts %6.3f h", split, s["speakers"], s["utts"], s["hours"])
    return stats


def _write_transcripts(out: Path, plan: Plan) -> None:
    by_chapter: dict[Path, list[str]] = {}
    for j in plan.jobs:
        trans = (out / j.path).parent / (j.uttid.rsplit("-", 1)[0] + ".trans.txt")
        by_chapter.setdefault(trans, []).append(f"{j.uttid} {plan.texts[j.uttid]}")
    for path, lines in by_chapter.items():
        atomic_write_text(path, "\n".join(sorted(lines)) + "\n")


def _stats(plan: Plan, samples: dict) -> dict:
    stats = {}
    for split in SPLITS:
        spks = [s for s in plan.speakers if s.split == split]
        ids = {str(s.id) for s in spks}
        utts = [u for u in samples if u.split("-", 1)[0] in ids]
        words = [w for u in utts for w in plan.texts[u].split()]
        stats[split] = {
            "speakers": len(spks), "utts": len(utts),
            "hours": round(sum(samples[u] for u in utts) / SAMPLE_RATE / 3600, 4),
            "words": len(words), "vocab": len(set(words)),
            "accents": sorted({s.accent for s in spks}),
        }
    train_vocab = {w for u, t in plan.texts.items() if u.split("-", 1)[0] in
                   {str(s.id) for s in plan.speakers if s.split == "train"} for w in t.split()}
    for split in ("dev", "test", "field"):
        ids = {str(s.id) for s in plan.speakers if s.split == split}
        words = [w for u, t in plan.texts.items() if u.split("-", 1)[0] in ids for w in t.split()]
        oov = sum(w not in train_vocab for w in words)
        stats[split]["oov_rate_vs_train"] = round(oov / max(1, len(words)), 4)
    return stats


def _write_speakers(out: Path, plan: Plan, samples: dict, params: dict, version: str) -> None:
    minutes: dict[int, float] = {}
    for u, n in samples.items():
        sid = int(u.split("-", 1)[0])
        minutes[sid] = minutes.get(sid, 0.0) + n / SAMPLE_RATE / 60
    lines = [
        "; mini_synth: synthetic English speech in LibriSpeech layout (espnet-lw)",
        f"; built with: python -m espnet_lw.bin.make_mini_synth --size {params['size']} "
        f"--seed {params['seed']} --snr_db {params['snr_db']:g}",
        f"; synthesiser: {version.splitlines()[0] if version else 'espeak-ng'}",
        "; SUBSET: train, dev, test (unseen speakers, accents seen in train),",
        f";         field (accents unseen in train + additive noise at {params['snr_db']:g} dB SNR)",
        "; VOICE: espeak-ng voice <accent>+<variant> (espeak-ng -v); RATE: words per minute (-s);",
        "; PITCH: espeak-ng -p (0-99); LEVEL: speech RMS in dBFS; SNR: additive noise, dB (- = clean)",
        ";",
        ";ID  |SEX| SUBSET | MINUTES | NAME                   | ACCENT                 | RATE | PITCH | LEVEL | SNR",
    ]
    for s in sorted(plan.speakers, key=lambda s: s.id):
        snr = f"{params['snr_db']:g}" if s.split == "field" else "-"
        lines.append(
            f"{s.id:<5}| {s.sex} | {s.split:<6} | {minutes.get(s.id, 0.0):7.2f} | {s.voice:<22} | "
            f"{ACCENT_NAMES.get(s.accent, s.accent):<22} | {s.rate:4d} | {s.pitch:5d} | {s.level_db:5.1f} | {snr}")
    atomic_write_text(out / "SPEAKERS.TXT", "\n".join(lines) + "\n")


def _write_readme(out: Path, plan: Plan, stats: dict, params: dict, version: str) -> None:
    rows = "".join(
        f"  {split:<6} {s['speakers']:3d} speakers {s['utts']:5d} utterances {s['hours'] * 60:7.1f} min  "
        f"vocab {s['vocab']:5d}" + (f"  OOV vs train {100 * s['oov_rate_vs_train']:.2f}%"
                                     if "oov_rate_vs_train" in s else "")
        + f"  accents: {' '.join(s['accents'])}\n"
        for split, s in stats.items())
    command = (f"python -m espnet_lw.bin.make_mini_synth --size {params['size']} --seed {params['seed']} "
               f"--snr_db {params['snr_db']:g}")
    text = f"""mini_synth -- a synthetic English speech corpus in LibriSpeech layout
=====================================================================

Built by espnet-lw: {command}
Synthesiser: {version.splitlines()[0] if version else 'espeak-ng'}; resampling/encoding: sox.

Audio: 16 kHz, mono, 16-bit FLAC.  Text: randomly generated English sentences
(espnet_lw.data.sentences, seeded), normalised like LibriSpeech (upper case,
apostrophes, single spaces).  All sentences are distinct across splits.

Speakers are espeak-ng voices (<accent>+<variant>) with their own rate, pitch
and level, listed in SPEAKERS.TXT.  dev and test speakers use accents heard in
train, but voice/variant/rate/pitch combinations never used in train.  The
field split uses accents never heard in train and has additive pink-ish noise
at {params['snr_db']:g} dB SNR (seeded per utterance; clean splits carry a faint
noise floor at {CLEAN_FLOOR_SNR_DB:g} dB SNR instead of digital silence).

Statistics:
{rows}
"""
    atomic_write_text(out / "README.TXT", text)
