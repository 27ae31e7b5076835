"""Tests of the WordNet sentence source, the noise generators and the mini_synth corpus builder."""

from __future__ import annotations

import filecmp
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from espnet_lw.data import noise, synth, wordnet
from espnet_lw.data.synth import FIELD_ACCENTS, MARKER, TRAIN_ACCENTS, build_corpus, flac_info, make_plan
from espnet_lw.utils.cli import UserError

UTT_RE = re.compile(r"^(\d+)-(\d+)-(\d{4})$")
TEXT_RE = re.compile(r"^[A-Z']+( [A-Z']+)*$")


# --------------------------------------------------------------------------
# WordNet sentences
# --------------------------------------------------------------------------
def test_wordnet_sentences_are_normalised_and_open_vocabulary():
    sents = wordnet.load_sentences()
    assert len(sents) > 20000
    assert len({s.transcript for s in sents}) == len(sents)  # no duplicates
    words = Counter(w for s in sents for w in s.transcript.split())
    assert len(words) > 15000  # open vocabulary, not a template's word list
    for s in sents[::97]:
        assert TEXT_RE.match(s.transcript), s.transcript
        assert wordnet.MIN_WORDS <= len(s.transcript.split()) <= wordnet.MAX_WORDS
        assert s.spoken == s.transcript.lower() + "."


@pytest.mark.parametrize("example,expected", [
    ("the cat sat on the mat", "THE CAT SAT ON THE MAT"),
    ("He takes the cake for chutzpah!", "HE TAKES THE CAKE FOR CHUTZPAH"),
    ("her ex-boyfriend stalked her", "HER EX BOYFRIEND STALKED HER"),
    ("invading Iraq won't be a cakewalk", "INVADING IRAQ WON'T BE A CAKEWALK"),
    ("the statement `he is brave' is odd", None),  # quotes inside
    ("he rented a TV set", None),  # acronym
    ("appointed Robert C. Weaver", None),  # lone letter
    ("it cost 5 dollars", None),  # digits
    ("wild talk", None),  # too short
])
def test_wordnet_normalise(example, expected):
    assert wordnet.normalise(example) == expected


def test_wordnet_missing_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("WNSEARCHDIR", str(tmp_path))
    with pytest.raises(UserError) as e:
        wordnet.wordnet_dir()
    assert "wordnet-base" in e.value.format() and str(tmp_path) in e.value.format()


def test_wordnet_shuffle_is_seeded():
    sents = wordnet.load_sentences()[:500]
    assert wordnet.shuffled(sents, 1) == wordnet.shuffled(sents, 1)
    assert wordnet.shuffled(sents, 1) != wordnet.shuffled(sents, 2)
    assert sorted(s.transcript for s in wordnet.shuffled(sents, 1)) == sorted(s.transcript for s in sents)


# --------------------------------------------------------------------------
# noise
# --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", noise.KINDS)
def test_noise_kinds_unit_rms_and_seeded(kind):
    src = [np.sin(np.arange(8000) * 0.05) * (1 + np.arange(8000) % 300 / 300.0)]
    a = noise.make(kind, np.random.default_rng(1), 16000, 16000, src)
    b = noise.make(kind, np.random.default_rng(1), 16000, 16000, src)
    c = noise.make(kind, np.random.default_rng(2), 16000, 16000, src)
    assert a.shape == (16000,) and np.isfinite(a).all()
    assert np.sqrt(np.mean(a ** 2)) == pytest.approx(1.0, rel=1e-3)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_hum_is_low_frequency():
    x = noise.hum(np.random.default_rng(0), 32000, 16000)
    spec = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / 16000)
    assert spec[freqs < 600].sum() > 0.9 * spec.sum()


def test_unknown_noise_kind():
    with pytest.raises(ValueError, match="unknown noise kind"):
        noise.make("jackhammer", np.random.default_rng(0), 10, 16000)


# --------------------------------------------------------------------------
# plan (no audio)
# --------------------------------------------------------------------------
@pytest.mark.parametrize("size", ["tiny", "small", "default"])
def test_plan_speakers_and_texts(size):
    plan = make_plan(size, seed=0)
    by_split = {s: [sp for sp in plan.speakers if sp.split == s] for s in synth.SPLITS}
    train = by_split["train"]
    train_accents = {s.accent for s in train}
    train_combos = {(s.accent, s.variant, s.rate, s.pitch) for s in train}
    train_pairs = {(s.accent, s.variant) for s in train}
    assert train_accents <= set(TRAIN_ACCENTS)
    for split in ("dev", "test"):
        for s in by_split[split]:
            assert s.accent in train_accents  # accents seen in train
            if s.engine == "espeak-ng":  # unseen voices (a flite voice is new by its rate and pitch)
                assert (s.accent, s.variant) not in train_pairs
            assert (s.accent, s.variant, s.rate, s.pitch) not in train_combos
    for split in synth.FIELD_SPLITS:
        assert by_split[split], split
        for s in by_split[split]:
            assert s.accent in FIELD_ACCENTS and s.accent not in train_accents
    # the two field splits are disjoint by speaker (voice, rate and pitch)
    combos = {split: {(s.voice, s.rate, s.pitch) for s in by_split[split]} for split in synth.FIELD_SPLITS}
    assert not combos["field_adapt"] & combos["field_test"]
    # flite voices (recorded speakers) in every field split and, at the default size, in train/dev/test
    for split in synth.FIELD_SPLITS + (("train", "dev", "test") if size == "default" else ()):
        assert any(s.engine == "flite" for s in by_split[split]), split
    # site noise: every field utterance has a kind and an SNR inside the range; clean splits none
    for j in plan.jobs:
        field = j.path.split("/", 1)[0] in synth.FIELD_SPLITS
        assert (j.snr_db is not None) == field
        if field:
            assert j.noise_kind in noise.KINDS and 5.0 <= j.snr_db <= 20.0
    ids = [s.id for s in plan.speakers]
    assert len(ids) == len(set(ids))
    # sentences are distinct across the whole corpus, babble talkers included (so splits never share one)
    babble = [j.spoken for js in plan.babble_jobs.values() for j in js]
    assert len(set(plan.texts.values())) == len(plan.texts)
    assert not {t.lower() + "." for t in plan.texts.values()} & set(babble)
    # both sexes present in train
    assert {s.sex for s in train} == {"F", "M"}


def test_plan_sizes():
    n = {size: sum(1 for j in make_plan(size).jobs if j.path.startswith("train/"))
         for size in ("tiny", "small", "default")}
    assert n["tiny"] == 40
    assert n["tiny"] < n["small"] < n["default"]
    dev = sum(1 for j in make_plan("default").jobs if j.path.startswith("dev/"))
    assert dev >= 600  # a 95 % interval of about +-1 WER point on a difference


def test_bad_snr_range():
    with pytest.raises(UserError, match="must not exceed"):
        make_plan("tiny", snr_db_range=(20, 5))


def test_unknown_size():
    with pytest.raises(UserError, match="unknown size"):
        make_plan("huge")


# --------------------------------------------------------------------------
# the built tiny corpus
# --------------------------------------------------------------------------
def _flacs(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*/*/*/*.flac") if p.parts[-4] != "noise")


def _read_speakers(corpus: Path) -> dict[str, dict]:
    rows = {}
    for line in (corpus / "SPEAKERS.TXT").read_text().splitlines():
        if line.startswith(";") or not line.strip():
            continue
        f = [x.strip() for x in line.split("|")]
        rows[f[0]] = {"sex": f[1], "split": f[2], "minutes": float(f[3]), "voice": f[4],
                      "accent": f[5], "rate": int(f[6]), "pitch": int(f[7]), "noise": f[9]}
    return rows


def test_layout_and_transcripts(tiny_corpus):
    assert (tiny_corpus / MARKER).is_file()
    assert (tiny_corpus / "README.TXT").is_file()
    assert sorted(p.name for p in tiny_corpus.iterdir() if p.is_dir()) == sorted(synth.SPLITS + ("noise",))
    flacs = _flacs(tiny_corpus)
    assert len(flacs) == 40 + 4 * 8
    bank = sorted(p.name for p in (tiny_corpus / "noise" / "bank").glob("*.flac"))
    assert bank == [f"{k}-0.flac" for k in noise.KINDS]
    noisy = [line.split() for line in (tiny_corpus / "NOISE.TXT").read_text().splitlines()[1:]]
    assert len(noisy) == 2 * 8 and {n[1] for n in noisy} <= set(noise.KINDS)
    for flac in flacs:
        m = UTT_RE.match(flac.stem)
        assert m, flac
        assert (m.group(1), m.group(2)) == (flac.parent.parent.name, flac.parent.name)
    n_lines = 0
    for trans in tiny_corpus.glob("*/*/*/*.trans.txt"):
        spk, chap = trans.parent.parent.name, trans.parent.name
        assert trans.name == f"{spk}-{chap}.trans.txt"
        lines = trans.read_text().splitlines()
        ids = [line.split(" ", 1)[0] for line in lines]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        for line in lines:
            uttid, text = line.split(" ", 1)
            assert TEXT_RE.match(text), line
            assert (trans.parent / f"{uttid}.flac").is_file()
        # and every flac of the chapter has a line
        assert sorted(p.stem for p in trans.parent.glob("*.flac")) == ids
        n_lines += len(lines)
    assert n_lines == len(flacs)


def test_audio_is_16k_mono_16bit(tiny_corpus):
    for flac in _flacs(tiny_corpus):
        sr, ch, bits, n = flac_info(flac)
        assert (sr, ch, bits) == (16000, 1, 16)
        assert 0.5 * sr < n < 15 * sr
    sf = pytest.importorskip("soundfile")
    data, sr = sf.read(str(_flacs(tiny_corpus)[0]), dtype="int16")
    assert sr == 16000 and data.ndim == 1 and abs(data).max() > 1000


def test_speakers_txt_and_split_disjointness(tiny_corpus):
    rows = _read_speakers(tiny_corpus)
    on_disk = {p.name: p.parent.name for p in tiny_corpus.glob("*/*") if p.is_dir() and p.parent.name != "noise"}
    assert set(rows) == set(on_disk)
    for spk, split in on_disk.items():
        assert rows[spk]["split"] == split
        assert rows[spk]["sex"] in ("M", "F")
        assert rows[spk]["minutes"] > 0
    train = [r for r in rows.values() if r["split"] == "train"]
    train_ids = {k for k, r in rows.items() if r["split"] == "train"}
    train_combos = {(r["voice"], r["rate"], r["pitch"]) for r in train}
    train_accents = {r["accent"] for r in train}
    for k, r in rows.items():
        if r["split"] == "train":
            continue
        assert k not in train_ids
        assert (r["voice"], r["rate"], r["pitch"]) not in train_combos
        if r["split"] in synth.FIELD_SPLITS:
            assert r["accent"] not in train_accents
            assert r["noise"] == "site"
        else:
            assert r["accent"] in train_accents and r["noise"] == "-"
    # field_adapt and field_test: disjoint by speaker, same conditions (unseen accents, site noise)
    adapt = {k for k, r in rows.items() if r["split"] == "field_adapt"}
    test = {k for k, r in rows.items() if r["split"] == "field_test"}
    assert adapt and test and not adapt & test


def test_train_and_test_texts_distinct(tiny_corpus):
    def texts(split):
        return {line.split(" ", 1)[1] for t in (tiny_corpus / split).glob("*/*/*.trans.txt")
                for line in t.read_text().splitlines()}

    seen = texts("train")
    for split in ("dev", "test") + synth.FIELD_SPLITS:
        assert not seen & texts(split)
        seen |= texts(split)


def test_complete_corpus_is_not_rebuilt(tiny_corpus):
    before = {p: p.stat().st_mtime_ns for p in _flacs(tiny_corpus)}
    stats = build_corpus(tiny_corpus, size="tiny", seed=0, nj=1)
    assert stats["train"]["utts"] == 40
    assert {p: p.stat().st_mtime_ns for p in _flacs(tiny_corpus)} == before


def test_deterministic_and_resumable(tiny_corpus, tmp_path):
    """A second build with the same seed is byte-identical, also after an interrupted run."""
    out = tmp_path / "again"
    build_corpus(out, size="tiny", seed=0, nj=2)
    # simulate an interruption: marker, transcripts and some audio gone, a stale temp file
    (out / MARKER).unlink()
    flacs = _flacs(out)
    for p in flacs[::7]:
        p.unlink()
    (flacs[1].parent / (flacs[1].name + ".tmp999")).write_bytes(b"junk")
    for t in out.glob("*/*/*/*.trans.txt"):
        t.unlink()
    build_corpus(out, size="tiny", seed=0, nj=1)
    assert not list(out.rglob("*.tmp*"))
    ref = sorted(p.relative_to(tiny_corpus) for p in tiny_corpus.rglob("*") if p.is_file())
    got = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert ref == got
    for rel in ref:
        if rel.name == MARKER:
            continue
        assert filecmp.cmp(tiny_corpus / rel, out / rel, shallow=False), rel


def test_other_settings_refused_without_overwrite(tiny_corpus, tmp_path):
    out = tmp_path / "c"
    shutil.copytree(tiny_corpus, out)
    with pytest.raises(UserError, match="different settings"):
        build_corpus(out, size="tiny", seed=1, nj=1)


def test_foreign_directory_refused(tmp_path):
    (tmp_path / "precious.txt").write_text("do not delete")
    with pytest.raises(UserError, match="not a mini_synth corpus"):
        build_corpus(tmp_path, size="tiny")
    assert (tmp_path / "precious.txt").is_file()


def test_missing_binary_is_named(monkeypatch, tmp_path):
    real_which = shutil.which
    monkeypatch.setattr(synth.shutil, "which", lambda b: None if b == "espeak-ng" else real_which(b))
    with pytest.raises(UserError) as e:
        build_corpus(tmp_path / "x", size="tiny")
    msg = e.value.format()
    assert "espeak-ng" in msg and "apt-get install espeak-ng flite sox flac wordnet-base" in msg


def test_cli_help_and_error(capsys, tmp_path):
    from espnet_lw.bin import make_mini_synth

    with pytest.raises(SystemExit) as e:
        make_mini_synth.main(["--help"])
    assert e.value.code == 0
    assert "--snr_db_range" in capsys.readouterr().out
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(SystemExit) as e:
        from espnet_lw.utils.cli import run_main

        run_main(make_mini_synth.main, ["--out", str(tmp_path), "--size", "tiny"])
    assert e.value.code == 1
    assert "not a mini_synth corpus" in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["f.txt"]
