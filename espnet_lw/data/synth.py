"""Build "mini_synth": a small synthetic English speech corpus in LibriSpeech layout.

Text: example sentences of WordNet 3.0 (:mod:`espnet_lw.data.wordnet`, real English written by
lexicographers, an open vocabulary of about 27,000 words), each used once in the whole corpus.
Speech: ``espeak-ng`` (many accents and voice variants) and ``flite`` (CMU voices built from
recordings of real speakers), each speaker with its own rate, pitch and level, resampled with
``sox`` and stored as 16 kHz, mono, 16-bit FLAC exactly like LibriSpeech::

    OUT/SPEAKERS.TXT                    speaker table (';' comment header)
    OUT/README.TXT                      how the corpus was made + statistics
    OUT/<split>/<spk>/<chapter>/<spk>-<chapter>-<NNNN>.flac
    OUT/<split>/<spk>/<chapter>/<spk>-<chapter>.trans.txt
    OUT/noise/bank/<kind>-<k>.flac      noise recordings for augmentation (ESPnet's noise_scp)
    OUT/noise/src/<set>/<id>.flac       the talkers that babble noise is made of

Splits:

* ``train``: espeak-ng accents en-us, en-gb, en-gb-x-rp, en-gb-x-gbclan, en-us-nyc and the flite
  voices slt, rms, kal16;
* ``dev`` / ``test``: the same accents and flite voices, but (accent, variant) pairs, rates and
  pitches never used in ``train`` -- unseen "speakers";
* ``field_adapt`` / ``field_test``: the user's site: accents never heard in ``train`` (Scottish,
  Caribbean, West Midlands; flite's Scottish voice awb) with site noise (babble, mains hum, a
  motor, pink noise) at SNRs drawn from a range; the two splits share these conditions and are
  disjoint by speaker. ``field_adapt`` (about 10 minutes) is what a user would record to adapt a
  model, ``field_test`` what the adapted model is judged on.

The build is deterministic for a given ``(size, seed, snr_db_range)``: the same sentences,
speakers and noise, and (with the same espeak-ng/flite/sox versions) byte-identical FLAC files.
It is resumable: every FLAC is written atomically, finished files are kept, and a marker file
(``.complete``) written last makes a finished corpus a no-op on the next call.
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
import tempfile
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from espnet_lw.data import noise as noise_lib
from espnet_lw.data.wordnet import load_sentences, shuffled
from espnet_lw.utils.cli import UserError
from espnet_lw.utils.io import atomic_write_text

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FORMAT_VERSION = 3  # bump whenever the audio processing or the text source changes
MARKER = ".complete"
PARAMS_FILE = ".mini_synth.json"
CLEAN_SPLITS = ("train", "dev", "test")
FIELD_SPLITS = ("field_adapt", "field_test")
SPLITS = CLEAN_SPLITS + FIELD_SPLITS

#: accents (espeak-ng languages) used for train/dev/test speakers
TRAIN_ACCENTS = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-x-gbclan", "en-us-nyc")
#: accents only used for the field splits (never heard in train)
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
#: flite voices (CMU, built from recordings of one real speaker each): sex, accent
FLITE_VOICES = {"slt": ("F", "en-us"), "rms": ("M", "en-us"), "kal16": ("M", "en-us"),
                "awb": ("M", "en-gb-scotland")}
TRAIN_FLITE = ("slt", "rms", "kal16")  #: also dev/test, with rates and pitches unseen in train
FIELD_FLITE = ("awb",)
#: a flite voice is every 6th speaker of a clean split (the 6th, 12th...) and every 4th of a field split
#: (the 2nd, 6th...: so that even the tiny corpus has one in each field split)
FLITE_EVERY = {"clean": (6, 5), "field": (4, 1)}
RATE_RANGE = (140, 190)  # espeak -s, words per minute (flite: duration stretch 165 / rate)
PITCH_RANGE = (30, 70)  # espeak -p, 0..99 (flite: sox pitch shift of 8 cents per step from 50)
LEVEL_DB_RANGE = (-26.0, -18.0)  # per-speaker speech RMS level, dBFS
CLEAN_FLOOR_SNR_DB = 55.0  # faint noise floor on clean splits (no digital silence)
DEFAULT_SNR_DB_RANGE = (5.0, 20.0)  # field splits: SNR drawn uniformly per utterance
BANK_SECONDS = 12.0  # length of one noise-bank recording


@dataclass(frozen=True)
class SplitSize:
    """Speakers in a split and utterances per speaker."""

    speakers: int
    utts_per_speaker: int


#: corpus sizes; at ~3.1 s per utterance: default ~1.5 h train, ~32 min dev and test each,
#: ~10 min field_adapt, ~16 min field_test
SIZES: dict[str, dict[str, SplitSize]] = {
    "tiny": {"train": SplitSize(4, 10), "dev": SplitSize(2, 4), "test": SplitSize(2, 4),
             "field_adapt": SplitSize(2, 4), "field_test": SplitSize(2, 4)},
    "small": {"train": SplitSize(20, 19), "dev": SplitSize(4, 12), "test": SplitSize(4, 12),
              "field_adapt": SplitSize(3, 8), "field_test": SplitSize(3, 8)},
    "default": {"train": SplitSize(44, 40), "dev": SplitSize(12, 52), "test": SplitSize(12, 52),
                "field_adapt": SplitSize(6, 32), "field_test": SplitSize(9, 36)},
}
#: babble talkers per size: (sources of the field splits' babble, sources of the noise bank's babble)
BABBLE_SOURCES = {"tiny": 6, "small": 12, "default": 24}
#: noise-bank recordings per kind
BANK_PER_KIND = {"tiny": 1, "small": 2, "default": 3}


@dataclass
class Speaker:
    """One synthetic speaker = a voice (espeak-ng accent + variant, or a flite voice) + rate + pitch + level."""

    id: int
    split: str
    sex: str
    accent: str
    variant: str  #: espeak-ng variant, or the flite voice name
    rate: int
    pitch: int
    level_db: float
    engine: str = "espeak-ng"  #: espeak-ng | flite
    chapters: list = field(default_factory=list)

    @property
    def voice(self) -> str:
        return f"flite:{self.variant}" if self.engine == "flite" else f"{self.accent}+{self.variant}"


@dataclass(frozen=True)
class Job:
    """Everything needed to synthesise one utterance (picklable).

    ``voice`` is an espeak-ng voice (``en-us+m3``) or ``flite:<voice>``; ``snr_db`` None means clean
    (a faint floor of pink noise); otherwise noise of ``noise_kind`` at that SNR (babble is made of
    the talkers under ``OUT/noise/src/field``).
    """

    uttid: str
    path: str
    spoken: str
    voice: str
    rate: int
    pitch: int
    level_db: float
    snr_db: float | None
    seed: int
    noise_kind: str = "pink"


@dataclass
class Plan:
    """The full, deterministic description of a corpus."""

    speakers: list
    texts: dict  # uttid -> transcript
    jobs: list
    babble_jobs: dict = field(default_factory=dict)  # "field" | "bank" -> [Job] (talkers of babble noise)


# --------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------
INSTALL_FIX = ("install the Debian packages espeak-ng flite sox flac wordnet-base "
               "(apt-get install espeak-ng flite sox flac wordnet-base)")


def find_tools() -> dict[str, str]:
    """Absolute paths of espeak-ng, flite and sox, or a :class:`UserError` naming the missing one."""
    tools = {}
    for name in ("espeak-ng", "flite", "sox"):
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


def flite_version(flite: str) -> str:
    """The first line of ``flite --version``."""
    out = subprocess.run([flite, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version:\s*(\S+)", out)
    return m.group(1) if m else "flite"


def check_voices(espeak: str, accents, variants, flite: str | None = None, flite_voices=()) -> None:
    """Fail early (naming the voice) if an accent, a variant or a flite voice is missing."""
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
    if flite and flite_voices:
        listed = subprocess.run([flite, "-lv"], capture_output=True, text=True).stdout.split()
        for v in flite_voices:
            if v not in listed:
                raise UserError(f"flite has no voice '{v}' (flite -lv lists: {' '.join(listed[2:])})",
                                None, "install Debian's flite 2.x package, which has slt, rms, kal16 and awb")


# --------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------
def _utt_seed(seed: int, uttid: str) -> int:
    digest = hashlib.sha256(f"mini_synth-{seed}-{uttid}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _new_speaker(rng: random.Random, sid: int, split: str, sex: str, accent: str, engine: str,
                 variant: str | None, used_pairs: set, used_combos: set) -> Speaker:
    """A speaker whose (accent, variant) pair (espeak-ng) or (voice, rate, pitch) (flite) is new."""
    if variant is None:
        candidates = [v for v in VARIANTS[sex] if (accent, v) not in used_pairs]
        variant = rng.choice(candidates)
        used_pairs.add((accent, variant))
    while True:
        rate = rng.randint(*RATE_RANGE)
        pitch = rng.randint(*PITCH_RANGE)
        if (accent, variant, rate, pitch) not in used_combos:
            break
    used_combos.add((accent, variant, rate, pitch))
    level = round(rng.uniform(*LEVEL_DB_RANGE), 1)
    return Speaker(sid, split, sex, accent, variant, rate, pitch, level, engine)


def make_plan(size: str, seed: int = 0, snr_db_range: tuple = DEFAULT_SNR_DB_RANGE) -> Plan:
    """Decide speakers, chapters, utterance ids, texts and noise (no audio).

    The result depends only on ``(size, seed, snr_db_range)`` (and the WordNet database).
    """
    if size not in SIZES:
        raise UserError(f"unknown size '{size}'", None, f"use one of {', '.join(SIZES)}")
    lo, hi = (float(x) for x in snr_db_range)
    if lo > hi:
        raise UserError(f"SNR range {lo:g}..{hi:g}: the first value must not exceed the second", None,
                        "pass --snr_db_range LOW HIGH, e.g. --snr_db_range 5 20")
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
        is_field = split in FIELD_SPLITS
        every, first = FLITE_EVERY["field" if is_field else "clean"]
        flite_voices = FIELD_FLITE if is_field else TRAIN_FLITE
        if is_field:
            accents = list(FIELD_ACCENTS)
        elif split == "train":
            accents = list(TRAIN_ACCENTS)
        else:  # dev / test: only accents actually present in train
            accents = sorted(set(train_accents), key=TRAIN_ACCENTS.index)
        offset = rng.randrange(len(accents))
        n_flite = 0
        for i in range(n):
            sid = spk_ids[len(speakers)]
            if i % every == first:  # a flite voice
                voice = flite_voices[n_flite % len(flite_voices)]
                n_flite += 1
                sex, accent = FLITE_VOICES[voice]
                spk = _new_speaker(rng, sid, split, sex, accent, "flite", voice, used_pairs, used_combos)
            else:
                accent = accents[(i + offset) % len(accents)] if split != "train" else accents[i % len(accents)]
                sex = "F" if len(speakers) % 2 == 0 else "M"
                spk = _new_speaker(rng, sid, split, sex, accent, "espeak-ng", None, used_pairs, used_combos)
                if split == "train":
                    train_accents.append(accent)
            speakers.append(spk)

    stream = iter(shuffled(load_sentences(), seed))
    noise_rng = random.Random(f"mini_synth-noise-{seed}")
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
                snr, kind = None, "pink"
                if spk.split in FIELD_SPLITS:
                    kind = noise_rng.choice(noise_lib.KINDS)
                    snr = round(noise_rng.uniform(lo, hi), 1)
                jobs.append(Job(uttid, rel, sent.spoken, spk.voice, spk.rate, spk.pitch,
                                spk.level_db, snr, _utt_seed(seed, uttid), kind))
    # babble talkers: train accents, sentences of their own (never in a split)
    talker_rng = random.Random(f"mini_synth-babble-{seed}")
    babble_jobs: dict[str, list[Job]] = {}
    for use in ("field", "bank"):
        babble_jobs[use] = []
        for k in range(BABBLE_SOURCES[size]):
            sex = talker_rng.choice("FM")
            voice = f"{talker_rng.choice(TRAIN_ACCENTS)}+{talker_rng.choice(VARIANTS[sex])}"
            uttid = f"{use}-{k:03d}"
            babble_jobs[use].append(Job(uttid, f"noise/src/{use}/{uttid}.flac", next(stream).spoken, voice,
                                        talker_rng.randint(*RATE_RANGE), talker_rng.randint(*PITCH_RANGE),
                                        -23.0, None, _utt_seed(seed, "babble-" + uttid)))
    return Plan(speakers, texts, jobs, babble_jobs)


# --------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------
def _tts(job: Job, espeak: str, flite: str, sox: str, env: dict) -> np.ndarray:
    """The job's speech as float64 samples at :data:`SAMPLE_RATE` (no level, noise or padding yet)."""
    effects: list[str] = []
    if job.voice.startswith("flite:"):
        with tempfile.TemporaryDirectory(prefix="mini_synth_flite_") as tmp:
            wav = Path(tmp) / "tts.wav"
            tts = subprocess.run(
                [flite, "-voice", job.voice.split(":", 1)[1], "-t", job.spoken, "-o", str(wav),
                 "--setf", f"duration_stretch={165.0 / job.rate:.4f}"], capture_output=True, env=env)
            audio = wav.read_bytes() if tts.returncode == 0 and wav.is_file() else b""
        effects = ["pitch", str(8 * (job.pitch - 50))]
        what = "flite"
    else:
        tts = subprocess.run(
            [espeak, "-v", job.voice, "-s", str(job.rate), "-p", str(job.pitch), "--stdout", job.spoken],
            capture_output=True, env=env)
        audio = tts.stdout if tts.returncode == 0 else b""
        what = "espeak-ng"
    if not audio:
        raise RuntimeError(f"{what} failed for {job.uttid}: {tts.stderr.decode(errors='replace')}")
    res = subprocess.run(
        [sox, "-t", "wav", "-", "-t", "raw", "-e", "floating-point", "-b", "32", "-L",
         "-c", "1", "-r", str(SAMPLE_RATE), "-", *effects],
        input=audio, capture_output=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"sox resampling failed for {job.uttid}: {res.stderr.decode(errors='replace')}")
    return np.frombuffer(res.stdout, dtype="<f4").astype(np.float64)


@lru_cache(maxsize=2)
def _babble_sources(directory: str) -> tuple:
    """The babble talkers of ``directory`` (sorted FLAC files) as float arrays."""
    import soundfile as sf

    files = sorted(Path(directory).glob("*.flac"))
    if not files:
        raise RuntimeError(f"{directory}: no babble talkers (build the noise sources first)")
    return tuple(sf.read(str(f), dtype="float64")[0] for f in files)


def write_flac(x: np.ndarray, dest: Path, sox: str = "sox") -> int:
    """Write float samples in [-1, 1] as 16-bit FLAC, atomically; returns the number of samples."""
    env = dict(os.environ, LC_ALL="C")
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype("<i2")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    enc = subprocess.run(
        [sox, "-t", "raw", "-e", "signed-integer", "-b", "16", "-L", "-c", "1",
         "-r", str(SAMPLE_RATE), "-", "-t", "flac", str(tmp)],
        input=pcm.tobytes(), capture_output=True, env=env)
    if enc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"sox FLAC encoding failed for {dest}: {enc.stderr.decode(errors='replace')}")
    os.replace(tmp, dest)
    return len(pcm)


def synth_one(job: Job, out_dir: str, espeak: str = "espeak-ng", sox: str = "sox",
              flite: str = "flite") -> tuple[str, int]:
    """Synthesise one utterance to ``out_dir/job.path``; returns (uttid, samples)."""
    env = dict(os.environ, LC_ALL="C")
    speech = _tts(job, espeak, flite, sox, env)
    rng = np.random.default_rng(job.seed)
    # normalise speech level: per-speaker level with a little per-utterance jitter
    rms = np.sqrt(np.mean(speech ** 2)) + 1e-12
    target = 10 ** ((job.level_db + rng.uniform(-1.5, 1.5)) / 20)
    speech *= target / rms
    lead = int(rng.uniform(0.05, 0.3) * SAMPLE_RATE)
    tail = int(rng.uniform(0.05, 0.2) * SAMPLE_RATE)
    x = np.concatenate([np.zeros(lead), speech, np.zeros(tail)])
    if job.snr_db is None:
        x += noise_lib.pink(rng, len(x), SAMPLE_RATE) * target / 10 ** (CLEAN_FLOOR_SNR_DB / 20)
    else:
        sources = _babble_sources(str(Path(out_dir) / "noise" / "src" / "field")) if job.noise_kind == "babble" else ()
        x += noise_lib.make(job.noise_kind, rng, len(x), SAMPLE_RATE, sources) * target / 10 ** (job.snr_db / 20)
    peak = np.max(np.abs(x))
    if peak > 0.98:
        x *= 0.98 / peak
    return job.uttid, write_flac(x, Path(out_dir) / job.path, sox)


def build_noise_bank(out: Path, size: str, seed: int, sox: str = "sox") -> list[Path]:
    """``out/noise/bank/<kind>-<k>.flac``: noise for augmentation (other talkers and seeds than the field splits')."""
    sources = _babble_sources(str(out / "noise" / "src" / "bank"))
    paths = []
    for kind in noise_lib.KINDS:
        for k in range(BANK_PER_KIND[size]):
            dest = out / "noise" / "bank" / f"{kind}-{k}.flac"
            paths.append(dest)
            if dest.is_file():
                continue
            rng = np.random.default_rng(_utt_seed(seed, f"bank-{kind}-{k}"))
            x = noise_lib.make(kind, rng, int(BANK_SECONDS * SAMPLE_RATE), SAMPLE_RATE, sources)
            write_flac(0.1 * x, dest, sox)  # -20 dBFS RMS: ESPnet's preprocessor rescales to the SNR
    return paths


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
    """SHA-256 over every job of the plan (texts, voices, noise, paths, seeds), babble talkers included."""
    h = hashlib.sha256()
    for j in plan.jobs + [j for use in sorted(plan.babble_jobs) for j in plan.babble_jobs[use]]:
        h.update(json.dumps(asdict(j), sort_keys=True).encode())
        h.update(plan.texts.get(j.uttid, "").encode())
    return h.hexdigest()


def _params(size: str, seed: int, snr_db_range: tuple, plan: Plan) -> dict:
    """What identifies a build: a corpus made with other params must not be reused."""
    return {"format": FORMAT_VERSION, "size": size, "seed": seed,
            "snr_db_range": [float(x) for x in snr_db_range], "plan_sha256": plan_fingerprint(plan)}


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_complete(out: str | os.PathLike, size: str | None = None, seed: int | None = None,
                snr_db_range: tuple | None = None) -> bool:
    """True if ``out`` holds a finished corpus (matching the given parameters, if any)."""
    marker = _read_json(Path(out) / MARKER)
    if not marker:
        return False
    want = {"size": size, "seed": seed,
            "snr_db_range": None if snr_db_range is None else [float(x) for x in snr_db_range]}
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


def _run_jobs(jobs: list, out: Path, tools: dict, nj: int, desc: str) -> None:
    """Synthesise ``jobs`` into ``out`` (the ones whose FLAC exists are skipped)."""
    todo = [j for j in jobs if not (out / j.path).is_file()]
    if not todo:
        return

    def work(job: Job):
        return synth_one(job, str(out), tools["espeak-ng"], tools["sox"], tools["flite"])

    if nj > 1 and len(todo) > 1:
        # Threads, not processes: the work is done by espeak-ng/flite and sox subprocesses, and forking
        # a process that already runs torch/OpenMP threads (as a test session does) can hang.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=nj) as pool:
            for _ in _progress(pool.map(work, todo), len(todo), desc):
                pass
    else:
        for j in _progress(todo, len(todo), desc):
            work(j)


def build_corpus(out: str | os.PathLike, size: str = "default", seed: int = 0, nj: int = 2,
                 snr_db_range: tuple = DEFAULT_SNR_DB_RANGE, overwrite: bool = False) -> dict:
    """Build (or resume, or skip) the corpus in ``out``; returns statistics.

    Raises :class:`UserError` for missing tools/voices/WordNet or an unusable ``out``.
    """
    out = Path(out).resolve()
    plan = make_plan(size, seed, snr_db_range)
    params = _params(size, seed, snr_db_range, plan)
    if _prepare_dir(out, params, overwrite):
        logger.info("corpus %s is already complete (size=%s seed=%d); nothing to do", out, size, seed)
        return json.loads((out / MARKER).read_text()).get("stats", {})
    tools = find_tools()
    espeak_variants = sorted({s.variant for s in plan.speakers if s.engine == "espeak-ng"}
                             | {j.voice.split("+", 1)[1] for js in plan.babble_jobs.values() for j in js})
    check_voices(tools["espeak-ng"], TRAIN_ACCENTS + FIELD_ACCENTS, espeak_variants, tools["flite"],
                 sorted({s.variant for s in plan.speakers if s.engine == "flite"}))
    n_todo = sum(not (out / j.path).is_file() for j in plan.jobs)
    logger.info("mini_synth size=%s seed=%d: %d utterances, %d to synthesise with %d job(s) -> %s",
                size, seed, len(plan.jobs), n_todo, nj, out)
    start = time.time()
    for use, jobs in plan.babble_jobs.items():  # talkers first: the field splits' babble is made of them
        _run_jobs(jobs, out, tools, nj, f"babble talkers ({use})")
    bank = build_noise_bank(out, size, seed, tools["sox"])
    _run_jobs(plan.jobs, out, tools, nj, "synth")
    synth_s = time.time() - start

    samples = {j.uttid: flac_info(out / j.path)[3] for j in plan.jobs}
    _write_transcripts(out, plan)
    stats = _stats(plan, samples)
    stats["noise_bank"] = {"files": len(bank), "kinds": list(noise_lib.KINDS), "seconds_each": BANK_SECONDS}
    versions = _versions(tools)
    _write_speakers(out, plan, samples, params, versions)
    _write_readme(out, plan, stats, params, versions)
    marker = dict(params, stats=stats)
    atomic_write_text(out / MARKER, json.dumps(marker, indent=1) + "\n")
    logger.info("synthesised %d utterances in %.1f s", n_todo, synth_s)
    for split in SPLITS:
        s = stats[split]
        logger.info("  %-11s %3d speakers %5d utts %6.3f h", split, s["speakers"], s["utts"], s["hours"])
    return stats


def _versions(tools: dict) -> str:
    version, _ = espeak_info(tools["espeak-ng"])
    return f"{version.splitlines()[0] if version else 'espeak-ng'}; {flite_version(tools['flite'])}"


def _command(params: dict) -> str:
    lo, hi = params["snr_db_range"]
    return (f"python -m espnet_lw.bin.make_mini_synth --size {params['size']} --seed {params['seed']} "
            f"--snr_db_range {lo:g} {hi:g}")


def _write_transcripts(out: Path, plan: Plan) -> None:
    by_chapter: dict[Path, list[str]] = {}
    for j in plan.jobs:
        trans = (out / j.path).parent / (j.uttid.rsplit("-", 1)[0] + ".trans.txt")
        by_chapter.setdefault(trans, []).append(f"{j.uttid} {plan.texts[j.uttid]}")
    for path, lines in by_chapter.items():
        atomic_write_text(path, "\n".join(sorted(lines)) + "\n")


def _split_of(plan: Plan) -> dict:
    return {str(s.id): s.split for s in plan.speakers}


def _stats(plan: Plan, samples: dict) -> dict:
    split_of = _split_of(plan)
    by_split: dict[str, list[str]] = {split: [] for split in SPLITS}
    for u in samples:
        by_split[split_of[u.split("-", 1)[0]]].append(u)
    train_vocab = {w for u in by_split["train"] for w in plan.texts[u].split()}
    snrs = {j.uttid: (j.snr_db, j.noise_kind) for j in plan.jobs}
    stats = {}
    for split in SPLITS:
        spks = [s for s in plan.speakers if s.split == split]
        utts = by_split[split]
        words = [w for u in utts for w in plan.texts[u].split()]
        st = {
            "speakers": len(spks), "utts": len(utts),
            "hours": round(sum(samples[u] for u in utts) / SAMPLE_RATE / 3600, 4),
            "words": len(words), "vocab": len(set(words)),
            "accents": sorted({s.accent for s in spks}),
            "voices": {"espeak-ng": sum(s.engine == "espeak-ng" for s in spks),
                       "flite": sum(s.engine == "flite" for s in spks)},
        }
        if split != "train":
            st["oov_rate_vs_train"] = round(sum(w not in train_vocab for w in words) / max(1, len(words)), 4)
        if split in FIELD_SPLITS:
            st["noise"] = {k: sum(snrs[u][1] == k for u in utts) for k in noise_lib.KINDS}
            vals = [snrs[u][0] for u in utts]
            st["snr_db"] = [min(vals), max(vals)] if vals else []
        stats[split] = st
    return stats


def _write_speakers(out: Path, plan: Plan, samples: dict, params: dict, versions: str) -> None:
    minutes: dict[int, float] = {}
    for u, n in samples.items():
        sid = int(u.split("-", 1)[0])
        minutes[sid] = minutes.get(sid, 0.0) + n / SAMPLE_RATE / 60
    lo, hi = params["snr_db_range"]
    lines = [
        "; mini_synth: synthetic English speech in LibriSpeech layout (espnet-lw)",
        f"; built with: {_command(params)}",
        f"; synthesisers: {versions}",
        "; SUBSET: train, dev, test (unseen speakers, accents seen in train),",
        f";         field_adapt, field_test (accents unseen in train + site noise at {lo:g}-{hi:g} dB SNR)",
        "; VOICE: espeak-ng voice <accent>+<variant> (espeak-ng -v) or flite:<voice> (flite -voice);",
        "; RATE: words per minute (espeak-ng -s; flite: duration stretch 165/RATE); PITCH: espeak-ng -p",
        "; (flite: a sox pitch shift of 8 cents per step from 50); LEVEL: speech RMS in dBFS;",
        "; NOISE: site noise of the field splits (kind and SNR of every utterance in NOISE.TXT; - = clean)",
        ";",
        ";ID  |SEX| SUBSET      | MINUTES | NAME                     | ACCENT                 | RATE | PITCH | LEVEL |"
        " NOISE",
    ]
    for s in sorted(plan.speakers, key=lambda s: s.id):
        noisy = "site" if s.split in FIELD_SPLITS else "-"
        lines.append(
            f"{s.id:<5}| {s.sex} | {s.split:<11} | {minutes.get(s.id, 0.0):7.2f} | {s.voice:<24} | "
            f"{ACCENT_NAMES.get(s.accent, s.accent):<22} | {s.rate:4d} | {s.pitch:5d} | {s.level_db:5.1f} | {noisy}")
    atomic_write_text(out / "SPEAKERS.TXT", "\n".join(lines) + "\n")
    noisy_lines = ["; uttid noise_kind snr_db (the field splits' site noise)"] + [
        f"{j.uttid} {j.noise_kind} {j.snr_db:g}" for j in sorted(plan.jobs, key=lambda j: j.uttid)
        if j.snr_db is not None]
    atomic_write_text(out / "NOISE.TXT", "\n".join(noisy_lines) + "\n")


def _write_readme(out: Path, plan: Plan, stats: dict, params: dict, versions: str) -> None:
    rows = "".join(
        f"  {split:<11} {s['speakers']:3d} speakers {s['utts']:5d} utterances {s['hours'] * 60:7.1f} min  "
        f"vocab {s['vocab']:5d}" + (f"  OOV vs train {100 * s['oov_rate_vs_train']:.2f}%"
                                     if "oov_rate_vs_train" in s else "")
        + f"  accents: {' '.join(s['accents'])}  flite speakers: {s['voices']['flite']}\n"
        for split, s in stats.items() if split in SPLITS)
    lo, hi = params["snr_db_range"]
    text = f"""mini_synth -- a synthetic English speech corpus in LibriSpeech layout
=====================================================================

Built by espnet-lw: {_command(params)}
Synthesisers: {versions}; resampling/encoding: sox.

Audio: 16 kHz, mono, 16-bit FLAC.  Text: example sentences of WordNet 3.0 (Princeton University,
WordNet licence), normalised like LibriSpeech (upper case, apostrophes, single spaces), each used
once: no sentence is shared between splits.

Speakers are espeak-ng voices (<accent>+<variant>) and flite voices (flite:<voice>, built from
recordings of real speakers) with their own rate, pitch and level, listed in SPEAKERS.TXT.  dev and
test speakers use accents and flite voices heard in train, but voice/variant/rate/pitch combinations
never used in train.  field_adapt and field_test use accents never heard in train (and flite's
Scottish voice awb, as different speakers by rate and pitch) and carry site noise: babble of 4-7
other talkers, mains hum, a motor, or pink noise, at {lo:g}-{hi:g} dB SNR (seeded per utterance).
The two field splits are disjoint by speaker.  Clean splits carry a faint noise floor at
{CLEAN_FLOOR_SNR_DB:g} dB SNR instead of digital silence.

noise/bank/ holds {stats['noise_bank']['files']} noise recordings of {BANK_SECONDS:g} s ({', '.join(noise_lib.KINDS)}),
made with other seeds and other babble talkers than the field splits: the noise a user would record
on site for augmentation (ESPnet's noise_scp).

Statistics:
{rows}
"""
    atomic_write_text(out / "README.TXT", text)
