"""Tests of the sentence generator and the mini_synth corpus builder."""

from __future__ import annotations

import filecmp
import os
import re
import shutil
from pathlib import Path

import pytest

from espnet_lw.data import sentences, synth
from espnet_lw.data.synth import FIELD_ACCENTS, MARKER, TRAIN_ACCENTS, build_corpus, flac_info, make_plan
from espnet_lw.utils.cli import UserError

UTT_RE = re.compile(r"^(\d+)-(\d+)-(\d{4})$")
TEXT_RE = re.compile(r"^[A-Z']+( [A-Z']+)*$")


# --------------------------------------------------------------------------
# sentence generator
# --------------------------------------------------------------------------
def test_sentences_are_normalised_and_sized():
    sents = sentences.generate(500, seed=3)
    assert len({s.transcript for s in sents}) == 500
    for s in sents:
        assert TEXT_RE.match(s.transcript), s.transcript
        assert sentences.MIN_WORDS <= len(s.words) <= sentences.MAX_WORDS
        # the spoken form has the same words, lower case, plus final punctuation
        assert s.spoken[-1] in ".?!"
        assert s.spoken[:-1].upper() == s.transcript


def test_sentences_deterministic_and_seed_dependent():
    a = [s.transcript for s in sentences.generate(50, seed=7)]
    b = [s.transcript for s in sentences.generate(50, seed=7)]
    c = [s.transcript for s in sentences.generate(50, seed=8)]
    assert a == b
    assert a != c


def test_vocabulary_is_large_and_zipf_like():
    assert sentences.vocabulary_size() >= 3000
    from collections import Counter

    counts = Counter(w for s in sentences.generate(2000, seed=0) for w in s.words)
    freqs = sorted(counts.values(), reverse=True)
    # frequent words recur a lot, and there is a long tail of rare words
    assert freqs[0] > 50 * freqs[len(freqs) // 2]
    assert len(counts) > 1200


def test_morphology_helpers():
    assert sentences.plural("box") == "boxes"
    assert sentences.plural("city") == "cities"
    assert sentences.plural("day") == "days"
    f = sentences.verb_forms("stop+")
    assert (f["past"], f["ing"], f["third"]) == ("stopped", "stopping", "stops")
    f = sentences.verb_forms("take:took:taken")
    assert (f["past"], f["part"], f["ing"], f["third"]) == ("took", "taken", "taking", "takes")
    assert sentences.verb_forms("carry")["past"] == "carried"
    assert sentences.number_words(42) == "forty two"
    assert sentences.number_words(305) == "three hundred and five"
    assert sentences.year_words(1984) == "nineteen eighty four"
    assert sentences.year_words(1905) == "nineteen oh five"


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
            assert (s.accent, s.variant) not in train_pairs  # but unseen voices
            assert (s.accent, s.variant, s.rate, s.pitch) not in train_combos
    for s in by_split["field"]:
        assert s.accent in FIELD_ACCENTS and s.accent not in train_accents
    ids = [s.id for s in plan.speakers]
    assert len(ids) == len(set(ids))
    # sentences are distinct across the whole corpus (so train and test never share one)
    assert len(set(plan.texts.values())) == len(plan.texts)
    # both sexes present in train
    assert {s.sex for s in train} == {"F", "M"}


def test_plan_sizes():
    n = {size: sum(1 for j in make_plan(size).jobs if j.path.startswith("train/"))
         for size in ("tiny", "small", "default")}
    assert n["tiny"] == 40
    assert n["tiny"] < n["small"] < n["default"]


def test_unknown_size():
    with pytest.raises(UserError, match="unknown size"):
        make_plan("huge")


# --------------------------------------------------------------------------
# the built tiny corpus
# --------------------------------------------------------------------------
def _flacs(root: Path) -> list[Path]:
    return sorted(root.glob("*/*/*/*.flac"))


def _read_speakers(corpus: Path) -> dict[str, dict]:
    rows = {}
    for line in (corpus / "SPEAKERS.TXT").read_text().splitlines():
        if line.startswith(";") or not line.strip():
            continue
        f = [x.strip() for x in line.split("|")]
        rows[f[0]] = {"sex": f[1], "split": f[2], "minutes": float(f[3]), "voice": f[4],
                      "accent": f[4].split("+")[0], "rate": int(f[6]), "pitch": int(f[7]), "snr": f[9]}
    return rows


def test_layout_and_transcripts(tiny_corpus):
    assert (tiny_corpus / MARKER).is_file()
    assert (tiny_corpus / "README.TXT").is_file()
    assert sorted(p.name for p in tiny_corpus.iterdir() if p.is_dir()) == ["dev", "field", "test", "train"]
    flacs = _flacs(tiny_corpus)
    assert len(flacs) == 40 + 3 * 8
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
    on_disk = {p.name: p.parent.name for p in tiny_corpus.glob("*/*") if p.is_dir()}
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
        if r["split"] == "field":
            assert r["accent"] not in train_accents
            assert r["snr"] == "10"
        else:
            assert r["accent"] in train_accents and r["snr"] == "-"


def test_train_and_test_texts_distinct(tiny_corpus):
    def texts(split):
        return {line.split(" ", 1)[1] for t in (tiny_corpus / split).glob("*/*/*.trans.txt")
                for line in t.read_text().splitlines()}

    train = texts("train")
    for split in ("dev", "test", "field"):
        assert not train & texts(split)


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
    assert "espeak-ng" in msg and "apt-get install espeak-ng sox flac" in msg


def test_cli_help_and_error(capsys, tmp_path):
    from espnet_lw.bin import make_mini_synth

    with pytest.raises(SystemExit) as e:
        make_mini_synth.main(["--help"])
    assert e.value.code == 0
    assert "--snr_db" in capsys.readouterr().out
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(SystemExit) as e:
        from espnet_lw.utils.cli import run_main

        run_main(make_mini_synth.main, ["--out", str(tmp_path), "--size", "tiny"])
    assert e.value.code == 1
    assert "not a mini_synth corpus" in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["f.txt"]
