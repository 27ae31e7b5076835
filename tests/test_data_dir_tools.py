"""Tests for the Kaldi data-dir tools (stages 2-4): kaldi_dir, validate, speed_perturb,
format_wav_scp and filter_data_dir.  Audio is tiny and synthetic; sox is run for real."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")

from espnet_lw.bin import filter_data_dir as filt  # noqa: E402
from espnet_lw.bin import format_wav_scp as fmt  # noqa: E402
from espnet_lw.bin import speed_perturb as sp  # noqa: E402
from espnet_lw.bin import validate_data_dir as val  # noqa: E402
from espnet_lw.data.kaldi_dir import (  # noqa: E402
    fix_data_dir,
    read_kv,
    read_kv_lines,
    utt2spk_to_spk2utt,
    validate_data_dir,
    write_kv,
)
from espnet_lw.utils.cli import UserError, run_main  # noqa: E402

FS = 16000
needs_sox = pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed")


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def tone(n: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Deterministic int16 noise-ish signal of n samples."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, channels)) * 3000).clip(-32000, 32000).astype(np.int16)
    return x[:, 0] if channels == 1 else x


def write_audio(path: Path, n: int, sr: int = FS, channels: int = 1, seed: int = 0, **kw) -> Path:
    sf.write(str(path), tone(n, channels, seed), sr, subtype="PCM_16", **kw)
    return path


def make_dir(d: Path, tables: dict) -> Path:
    """Create data dir ``d`` with the given ``{filename: {key: value}}`` tables (spk2utt derived)."""
    d.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        write_kv(d / name, table)
    if "utt2spk" in tables and "spk2utt" not in tables:
        write_kv(d / "spk2utt", utt2spk_to_spk2utt(tables["utt2spk"]))
    return d


def basic_dir(tmp_path: Path, name: str = "data") -> Path:
    """Three utterances from two speakers, plain FLAC files."""
    audio = tmp_path / "audio"
    audio.mkdir(exist_ok=True)
    lens = {"spkA-u1": 16000, "spkA-u2": 8000, "spkB-u1": 12000}
    wav = {u: str(write_audio(audio / f"{u}.flac", n, seed=i)) for i, (u, n) in enumerate(lens.items())}
    return make_dir(tmp_path / name, {
        "wav.scp": wav,
        "text": {"spkA-u1": "HELLO WORLD", "spkA-u2": "GOOD MORNING", "spkB-u1": "YES"},
        "utt2spk": {"spkA-u1": "spkA", "spkA-u2": "spkA", "spkB-u1": "spkB"},
    })


def run_cli(main, argv, capsys):
    """Run an entry point in-process; return (exit_code, stderr)."""
    code = 0
    try:
        run_main(main, argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    return code, capsys.readouterr().err


def nsamples(path) -> int:
    return sf.info(str(path)).frames


# ---------------------------------------------------------------------------
# kaldi_dir basics
# ---------------------------------------------------------------------------
def test_read_kv_keeps_empty_values_and_order(tmp_path):
    p = tmp_path / "text"
    p.write_text("b  hello  world \na\nc \tx\u3000y\n\n", encoding="utf-8")
    kv = read_kv(p)
    assert list(kv) == ["b", "a", "c"]
    assert kv["b"] == "hello  world"
    assert kv["a"] == ""  # empty transcript stays detectable
    assert kv["c"] == "x\u3000y"  # ideographic space is not a field separator
    assert [ln.key for ln in read_kv_lines(p)] == ["b", "a", "c", ""]


def test_read_kv_duplicate_is_user_error(tmp_path):
    p = tmp_path / "utt2spk"
    p.write_text("u1 s1\nu2 s1\nu1 s2\n")
    with pytest.raises(UserError) as e:
        read_kv(p)
    assert "u1" in str(e.value) and "lines 1 and 3" in str(e.value) and str(p) in str(e.value)
    assert read_kv(p, allow_duplicates=True)["u1"] == "s1"


def test_write_kv_sorts_in_c_order_and_is_atomic(tmp_path):
    p = tmp_path / "text"
    write_kv(p, {"b": "x", "a-1": "y", "B": "z", "a": "", "a1": ["p", "q"], "_u": "w"})
    lines = p.read_text().splitlines()
    assert [ln.split()[0] for ln in lines] == ["B", "_u", "a", "a-1", "a1", "b"]  # byte order
    assert "a" in lines and "a1 p q" in lines
    assert os.listdir(tmp_path) == ["text"]  # no temp file left behind
    with pytest.raises(ValueError):
        write_kv(p, {"bad key": "x"})


def test_utt2spk_to_spk2utt():
    s2u = utt2spk_to_spk2utt({"b2": "B", "a2": "A", "a1": "A", "b1": "B"})
    assert list(s2u.items()) == [("A", ["a1", "a2"]), ("B", ["b1", "b2"])]


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------
def test_validate_clean_dir(tmp_path):
    assert validate_data_dir(basic_dir(tmp_path)) == []


def _unsorted(d):
    (d / "text").write_text("spkB-u1 YES\nspkA-u1 HELLO\nspkA-u2 GOOD\n")


def _duplicate(d):
    with open(d / "utt2spk", "a") as f:
        f.write("spkB-u1 spkB\n")


def _text_not_in_wav(d):
    wav = read_kv(d / "wav.scp")
    del wav["spkA-u2"]
    write_kv(d / "wav.scp", wav)


def _wav_not_in_text(d):
    text = read_kv(d / "text")
    del text["spkB-u1"]
    write_kv(d / "text", text)


def _empty_text(d):
    text = read_kv(d / "text")
    text["spkA-u2"] = ""
    write_kv(d / "text", text)


def _spk2utt_mismatch(d):
    (d / "spk2utt").write_text("spkA spkA-u1\nspkB spkB-u1\n")


def _segments_unknown_reco(d):
    write_kv(d / "segments", {"spkA-u1": "spkA-u1 0 0.5", "spkA-u2": "nosuchreco 0 0.3", "spkB-u1": "spkB-u1 0 0.4"})


def _segments_bad_times(d):
    write_kv(d / "segments", {"spkA-u1": "spkA-u1 0.8 0.5", "spkA-u2": "spkA-u2 0 0.3", "spkB-u1": "spkB-u1 0 0.4"})


def _segments_past_end(d):
    write_kv(d / "segments", {"spkA-u1": "spkA-u1 0 5.0", "spkA-u2": "spkA-u2 0 0.3", "spkB-u1": "spkB-u1 0 0.4"})
    write_kv(d / "reco2dur", {"spkA-u1": "1.0", "spkA-u2": "0.5", "spkB-u1": "0.75"})


@pytest.mark.parametrize("mutate,file,needle", [
    (_unsorted, "text", "not sorted"),
    (_duplicate, "utt2spk", "duplicate"),
    (_text_not_in_wav, "wav.scp", "missing here: spkA-u2"),
    (_wav_not_in_text, "text", "missing here: spkB-u1"),
    (_empty_text, "text", "empty transcript"),
    (_spk2utt_mismatch, "spk2utt", "does not match utt2spk"),
    (_segments_unknown_reco, "segments", "unknown recording"),
    (_segments_bad_times, "segments", "not after start"),
    (_segments_past_end, "segments", "past the end"),
])
def test_validate_catches_problem(tmp_path, mutate, file, needle):
    d = basic_dir(tmp_path)
    mutate(d)
    problems = validate_data_dir(d)
    matching = [p for p in problems if p.startswith(str(d / file)) and needle in p]
    assert matching, problems


def test_fix_data_dir_repairs(tmp_path):
    d = basic_dir(tmp_path)
    _unsorted(d)  # text rewritten unsorted, keeps all three
    _duplicate(d)
    _empty_text(d)
    _spk2utt_mismatch(d)
    with open(d / "wav.scp", "a") as f:
        f.write("zzz-extra /nonexistent.flac\n")
    assert validate_data_dir(d)
    report = fix_data_dir(d)
    assert validate_data_dir(d) == []
    assert report.kept == 2
    assert report.dropped["empty transcript in text"] == ["spkA-u2"]
    assert "zzz-extra" in report.dropped["missing from text"]
    assert list(read_kv(d / "text")) == ["spkA-u1", "spkB-u1"]
    assert read_kv(d / "spk2utt") == {"spkA": "spkA-u1", "spkB": "spkB-u1"}
    assert (d / ".backup" / "text").is_file()


def test_validate_cli(tmp_path, capsys):
    d = basic_dir(tmp_path)
    assert run_cli(val.main, [str(d)], capsys)[0] == 0
    _empty_text(d)
    code, err = run_cli(val.main, [str(d)], capsys)
    assert code == 1 and str(d / "text") in err and "--fix" in err
    code, err = run_cli(val.main, ["--fix", str(d)], capsys)
    assert code == 0, err
    assert run_cli(val.main, [str(d)], capsys)[0] == 0


# ---------------------------------------------------------------------------
# speed perturbation
# ---------------------------------------------------------------------------
@needs_sox
def test_speed_perturb_ids_and_lengths(tmp_path, capsys):
    src = basic_dir(tmp_path)
    # one entry as a pipe, to check chaining
    wav = read_kv(src / "wav.scp")
    wav["spkB-u1"] = f"sox {wav['spkB-u1']} -t wav - |"
    write_kv(src / "wav.scp", wav)
    dst = tmp_path / "sp"
    assert run_cli(sp.main, ["--factors", "0.9 1.0 1.1", str(src), str(dst)], capsys)[0] == 0
    assert validate_data_dir(dst) == []
    utt2spk = read_kv(dst / "utt2spk")
    assert len(utt2spk) == 9
    assert utt2spk["sp0.9-spkA-u2"] == "sp0.9-spkA" and utt2spk["spkA-u2"] == "spkA"
    assert read_kv(dst / "spk2utt")["sp1.1-spkB"] == "sp1.1-spkB-u1"
    assert read_kv(dst / "text")["sp1.1-spkA-u1"] == "HELLO WORLD"
    wav_out = read_kv(dst / "wav.scp")
    assert wav_out["spkA-u1"] == wav["spkA-u1"]
    assert wav_out["sp0.9-spkA-u1"].startswith("sox -t flac ") and wav_out["sp0.9-spkA-u1"].endswith("speed 0.9 |")
    assert wav_out["sp1.1-spkB-u1"] == f"{wav['spkB-u1'][:-1].rstrip()} | sox -t wav - -t wav - speed 1.1 |"
    # render for real and check the durations scale by 1/factor
    dump = tmp_path / "dump"
    assert run_cli(fmt.main, ["--nj", "2", str(dst), str(dump)], capsys)[0] == 0
    n = {u: int(v) for u, v in read_kv(dump / "utt2num_samples").items()}
    for base, length in {"spkA-u1": 16000, "spkA-u2": 8000, "spkB-u1": 12000}.items():
        assert n[base] == length
        for f in (0.9, 1.1):
            assert abs(n[f"sp{f}-{base}"] - length / f) <= 0.01 * length, (base, f, n)
    # refuses to overwrite
    code, err = run_cli(sp.main, ["--factors", "0.9", str(src), str(dst)], capsys)
    assert code == 1 and str(dst) in err and "--overwrite" in err
    assert run_cli(sp.main, ["--factors", "0.9", "--overwrite", str(src), str(dst)], capsys)[0] == 0
    assert len(read_kv(dst / "utt2spk")) == 3


def test_speed_perturb_segments(tmp_path, capsys):
    rec = write_audio(tmp_path / "rec1.wav", 3 * FS)
    src = make_dir(tmp_path / "data", {
        "wav.scp": {"rec1": str(rec)},
        "segments": {"s1-a": "rec1 0.00 1.00", "s1-b": "rec1 1.50 2.70"},
        "text": {"s1-a": "A", "s1-b": "B"},
        "utt2spk": {"s1-a": "s1", "s1-b": "s1"},
        "reco2dur": {"rec1": "3.0"},
    })
    dst = tmp_path / "sp"
    assert run_cli(sp.main, ["--factors", "0.9,1.0", str(src), str(dst)], capsys)[0] == 0
    segs = read_kv(dst / "segments")
    assert segs["s1-b"] == "rec1 1.50 2.70"
    reco, start, end = segs["sp0.9-s1-b"].split()
    assert reco == "sp0.9-rec1"
    assert float(start) == pytest.approx(1.5 / 0.9, abs=1e-4) and float(end) == pytest.approx(3.0, abs=1e-4)
    assert float(read_kv(dst / "reco2dur")["sp0.9-rec1"]) == pytest.approx(3 / 0.9, abs=1e-3)
    assert set(read_kv(dst / "wav.scp")) == {"rec1", "sp0.9-rec1"}
    assert validate_data_dir(dst) == []


def test_speed_perturb_bad_factor(tmp_path, capsys):
    code, err = run_cli(sp.main, ["--factors", "0.9 fast", str(basic_dir(tmp_path)), str(tmp_path / "o")], capsys)
    assert code == 1 and "fast" in err and not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------
# format_wav_scp (stage 3)
# ---------------------------------------------------------------------------
@needs_sox
def test_format_segments_pipes_and_sphere(tmp_path, capsys):
    rec = write_audio(tmp_path / "rec.flac", 2 * FS, seed=1)
    sph = write_audio(tmp_path / "rec2.sph", FS, seed=2, format="NIST")
    src = make_dir(tmp_path / "data", {
        "wav.scp": {"recA": f"sox {rec} -t wav - |", "recB": str(sph)},
        "segments": {"spk1-a": "recA 0.20 0.70", "spk1-b": "recA 1.0 1.8", "spk2-c": "recB 0.25 1.0"},
        "text": {"spk1-a": "ONE", "spk1-b": "TWO", "spk2-c": "THREE"},
        "utt2spk": {"spk1-a": "spk1", "spk1-b": "spk1", "spk2-c": "spk2"},
        "utt2gender": {"spk1-a": "f", "spk1-b": "f", "spk2-c": "m"},
    })
    dst = tmp_path / "dump" / "raw" / "train"
    code, err = run_cli(fmt.main, ["--nj", "1", "--audio_format", "flac", str(src), str(dst)], capsys)
    assert code == 0, err
    wav = read_kv(dst / "wav.scp")
    assert wav["spk1-a"] == str(dst / "data" / "spk1-a.flac")
    expect = {"spk1-a": 8000, "spk1-b": 12800, "spk2-c": 12000}
    assert {u: int(v) for u, v in read_kv(dst / "utt2num_samples").items()} == expect
    for utt, n in expect.items():
        info = sf.info(wav[utt])
        assert (info.frames, info.samplerate, info.channels, info.subtype) == (n, FS, 1, "PCM_16")
    # the cut is sample-exact
    full, _ = sf.read(str(rec), dtype="int16")
    cut, _ = sf.read(wav["spk1-b"], dtype="int16")
    assert np.array_equal(cut, full[16000:28800])
    assert (dst / "feats_type").read_text().strip() == "raw"
    assert (dst / "audio_format").read_text().strip() == "flac"
    assert read_kv(dst / "text") == read_kv(src / "text")
    assert read_kv(dst / "utt2gender")["spk2-c"] == "m"
    assert not (dst / "segments").exists()
    assert validate_data_dir(dst) == []
    assert [p.name for p in dst.parent.iterdir()] == ["train"]  # no temp dir left


def test_format_wav_output_relative_paths(tmp_path, capsys, monkeypatch):
    src = basic_dir(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert run_cli(fmt.main, ["--audio_format", "wav", "--nj", "2", str(src), "dump/raw/x"], capsys)[0] == 0
    wav = read_kv(tmp_path / "dump/raw/x/wav.scp")
    assert wav["spkA-u2"] == "dump/raw/x/data/spkA-u2.wav"
    assert sf.info(wav["spkA-u2"]).format == "WAV" and nsamples(wav["spkA-u2"]) == 8000


def test_format_wrong_rate_errors_then_resamples(tmp_path, capsys):
    src = basic_dir(tmp_path)
    bad = write_audio(tmp_path / "audio" / "spkA-u2.flac", 4000, sr=8000)
    dst = tmp_path / "dump"
    code, err = run_cli(fmt.main, ["--nj", "1", str(src), str(dst)], capsys)
    assert code == 1
    assert str(bad) in err and "8000" in err and "--resample true" in err and "spkA-u2" in err
    assert "Traceback" not in err
    assert not dst.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    code, err = run_cli(fmt.main, ["--nj", "1", "--resample", "true", str(src), str(dst)], capsys)
    assert code == 0, err
    info = sf.info(read_kv(dst / "wav.scp")["spkA-u2"])
    assert info.samplerate == FS and abs(info.frames - 8000) <= 2


@pytest.mark.parametrize("kind", ["corrupt", "empty", "pipe", "segment", "stereo"])
def test_format_bad_input_names_utt_and_source(tmp_path, capsys, kind):
    src = basic_dir(tmp_path)
    wav = read_kv(src / "wav.scp")
    target = wav["spkB-u1"]
    if kind == "corrupt":
        Path(target).write_bytes(b"fLaC" + os.urandom(200))
    elif kind == "empty":
        sf.write(target, np.zeros(0, dtype=np.int16), FS, subtype="PCM_16")
    elif kind == "pipe":
        target = f"cat {tmp_path}/does-not-exist.wav"
        wav["spkB-u1"] = target + " |"
        write_kv(src / "wav.scp", wav)
    elif kind == "segment":
        write_kv(src / "segments", {"spkA-u1": "spkA-u1 0 0.5", "spkA-u2": "spkA-u2 0 0.5",
                                    "spkB-u1": "spkB-u1 0.1 3.0"})
    elif kind == "stereo":
        write_audio(Path(target), 12000, channels=2)
    dst = tmp_path / "dump"
    code, err = run_cli(fmt.main, ["--nj", "1", str(src), str(dst)], capsys)
    assert code == 1
    assert "spkB-u1" in err and target in err, err
    assert "Traceback" not in err and not dst.exists()
    if kind == "stereo":
        assert "--channel" in err
        code, err = run_cli(fmt.main, ["--nj", "1", "--channel", "1", str(src), str(dst)], capsys)
        assert code == 0, err
        out, _ = sf.read(read_kv(dst / "wav.scp")["spkB-u1"], dtype="int16")
        assert np.array_equal(out, tone(12000, 2)[:, 1])


def test_format_refuses_overwrite(tmp_path, capsys):
    src = basic_dir(tmp_path)
    dst = tmp_path / "dump"
    dst.mkdir()
    (dst / "keep.txt").write_text("precious")
    code, err = run_cli(fmt.main, [str(src), str(dst)], capsys)
    assert code == 1 and str(dst) in err and "--overwrite true" in err
    assert (dst / "keep.txt").read_text() == "precious"
    assert run_cli(fmt.main, ["--overwrite", "true", "--nj", "1", str(src), str(dst)], capsys)[0] == 0
    assert not (dst / "keep.txt").exists() and (dst / "utt2num_samples").is_file()


def test_format_rejects_invalid_source_dir(tmp_path, capsys):
    src = basic_dir(tmp_path)
    _wav_not_in_text(src)
    code, err = run_cli(fmt.main, [str(src), str(tmp_path / "dump")], capsys)
    assert code == 1 and str(src / "text") in err and "validate_data_dir --fix" in err


# ---------------------------------------------------------------------------
# filter_data_dir (stage 4)
# ---------------------------------------------------------------------------
def test_filter_removes_and_reports(tmp_path, capsys):
    audio = tmp_path / "audio"
    audio.mkdir()
    lens = {"s-long": 5 * FS, "s-ok1": FS, "s-ok2": FS // 2, "s-short": 800, "s-empty": FS, "t-ok": FS}
    wav = {u: str(write_audio(audio / f"{u}.flac", n)) for u, n in lens.items()}
    src = make_dir(tmp_path / "data", {
        "wav.scp": wav,
        "text": {u: ("  " if u == "s-empty" else "WORDS") for u in lens},
        "utt2spk": {u: u.split("-")[0] for u in lens},
    })
    dump = tmp_path / "dump" / "org"
    assert run_cli(fmt.main, ["--nj", "1", str(src), str(dump)], capsys)[0] == 0
    out = tmp_path / "dump" / "filtered"
    code, err = run_cli(filt.main, ["--fs", "16000", "--min_wav_duration", "0.1", "--max_wav_duration", "2",
                                    str(dump), str(out)], capsys)
    assert code == 0, err
    assert list(read_kv(out / "utt2spk")) == ["s-ok1", "s-ok2", "t-ok"]
    assert read_kv(out / "spk2utt") == {"s": "s-ok1 s-ok2", "t": "t-ok"}
    kept = ("s-ok1", "s-ok2", "t-ok")
    assert read_kv(out / "wav.scp") == {u: v for u, v in read_kv(dump / "wav.scp").items() if u in kept}
    assert not (out / "data").exists()
    removed = {ln.split()[0]: ln.split()[1] for ln in (out / "removed.txt").read_text().splitlines()}
    assert removed == {"s-long": "too_long", "s-short": "too_short", "s-empty": "empty_text"}
    assert (out / "feats_type").read_text() == "raw\n" and (out / "audio_format").read_text() == "flac\n"
    assert validate_data_dir(out) == []
    # no overwrite without --overwrite
    code, err = run_cli(filt.main, [str(dump), str(out)], capsys)
    assert code == 1 and "--overwrite" in err
    assert run_cli(filt.main, ["--overwrite", "--max_wav_duration", "10", str(dump), str(out)], capsys)[0] == 0
    assert len(read_kv(out / "utt2spk")) == 4


def test_filter_needs_dump_dir(tmp_path, capsys):
    src = basic_dir(tmp_path)
    code, err = run_cli(filt.main, [str(src), str(tmp_path / "out")], capsys)
    assert code == 1 and "utt2num_samples" in err and "format_wav_scp" in err
