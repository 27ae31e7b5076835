"""Tests of the LibriSpeech-layout -> Kaldi data directory preparation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from espnet_lw.data.librispeech import prepare, read_speakers_txt
from espnet_lw.utils.cli import UserError, run_main

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2" / "mini_synth" / "lw1"

SPEAKERS = """\
; fake LibriSpeech speaker table
;ID  |SEX| SUBSET           |MINUTES| NAME
9    | F | dev-clean        | 1.00 | Alice
10   | M | dev-clean        | 2.00 | Bob
"""


def make_fake_split(root: Path, chapters=None, speakers_txt: bool = True) -> Path:
    """A LibriSpeech-like ``root/dev-clean`` with dummy FLAC files (never decoded here)."""
    chapters = chapters or {
        ("9", "100"): ["HELLO WORLD", "IT'S A TEST"],
        ("10", "7"): ["ONE TWO THREE"],
        ("10", "12"): ["FOUR FIVE", "SIX", "SEVEN EIGHT NINE"],
    }
    split = root / "dev-clean"
    for (spk, chap), texts in chapters.items():
        d = split / spk / chap
        d.mkdir(parents=True)
        lines = []
        for i, text in enumerate(texts):
            uttid = f"{spk}-{chap}-{i:04d}"
            (d / f"{uttid}.flac").write_bytes(b"fLaC")
            lines.append(f"{uttid} {text}")
        (d / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    if speakers_txt:
        (root / "SPEAKERS.TXT").write_text(SPEAKERS)
    return split


def read_kv(path: Path) -> list[tuple[str, str]]:
    return [tuple(line.split(" ", 1)) for line in path.read_text().splitlines()]


def check_kaldi_dir(d: Path) -> None:
    """Sorted (C order), unique keys; consistent utt2spk/spk2utt/text/wav.scp."""
    keys = {}
    for name in ("wav.scp", "text", "utt2spk", "spk2utt"):
        kv = read_kv(d / name)
        ks = [k for k, _ in kv]
        assert ks == sorted(ks, key=lambda k: k.encode()), name
        assert len(set(ks)) == len(ks), name
        keys[name] = ks
    assert keys["wav.scp"] == keys["text"] == keys["utt2spk"]
    utt2spk = dict(read_kv(d / "utt2spk"))
    spk2utt = {s: u.split() for s, u in read_kv(d / "spk2utt")}
    assert sorted(u for us in spk2utt.values() for u in us) == sorted(utt2spk)
    for spk, utts in spk2utt.items():
        assert utts == sorted(utts)
        for u in utts:
            assert utt2spk[u] == spk and u.startswith(spk + "-")
    for _, path in read_kv(d / "wav.scp"):
        assert os.path.isabs(path) and os.path.isfile(path) and path.endswith(".flac")


def test_basic_fake_split(tmp_path):
    src = make_fake_split(tmp_path / "LibriSpeech")
    dst = tmp_path / "data" / "dev"
    stats = prepare(src, dst)
    assert stats["utts"] == 6 and stats["speakers"] == 3 and stats["readers"] == 2
    check_kaldi_dir(dst)
    # byte order: "10-..." sorts before "9-..."
    assert [k for k, _ in read_kv(dst / "text")][0] == "10-12-0000"
    assert dict(read_kv(dst / "text"))["9-100-0001"] == "IT'S A TEST"
    assert dict(read_kv(dst / "utt2spk"))["10-7-0000"] == "10-7"
    assert dict(read_kv(dst / "utt2gender")) == {
        "9-100-0000": "f", "9-100-0001": "f", "10-7-0000": "m",
        "10-12-0000": "m", "10-12-0001": "m", "10-12-0002": "m"}
    assert not [p for p in dst.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_no_speakers_txt_no_utt2gender(tmp_path):
    src = make_fake_split(tmp_path / "LS", speakers_txt=False)
    prepare(src, tmp_path / "d")
    assert not (tmp_path / "d" / "utt2gender").exists()


def test_read_speakers_txt_skips_comments(tmp_path):
    p = tmp_path / "SPEAKERS.TXT"
    p.write_text(SPEAKERS + "garbage line\n")
    assert read_speakers_txt(p) == {"9": "f", "10": "m"}


def test_missing_audio_is_an_error(tmp_path):
    src = make_fake_split(tmp_path / "LS")
    (src / "10" / "12" / "10-12-0001.flac").unlink()
    with pytest.raises(UserError) as e:
        prepare(src, tmp_path / "d")
    msg = e.value.format()
    assert "10-12.trans.txt:2" in msg and "10-12-0001" in msg and "missing" in msg
    assert not (tmp_path / "d").exists()


def test_untranscribed_flac_error_or_skip(tmp_path):
    src = make_fake_split(tmp_path / "LS")
    (src / "9" / "100" / "9-100-0005.flac").write_bytes(b"fLaC")
    with pytest.raises(UserError) as e:
        prepare(src, tmp_path / "d")
    assert "no transcript" in str(e.value) and "9-100.trans.txt" in str(e.value)
    prepare(src, tmp_path / "d", skip_untranscribed=True)
    assert "9-100-0005" not in (tmp_path / "d" / "wav.scp").read_text()


def test_empty_transcript_is_an_error(tmp_path):
    src = make_fake_split(tmp_path / "LS", chapters={("9", "100"): ["HELLO", ""]})
    with pytest.raises(UserError) as e:
        prepare(src, tmp_path / "d")
    assert "empty transcript" in str(e.value) and "9-100.trans.txt:2" in str(e.value)


@pytest.mark.parametrize("bad", ["HELLO WORLD", "9-100 TEXT", "9-101-0000 WRONG CHAPTER"])
def test_malformed_line_is_an_error(tmp_path, bad):
    src = make_fake_split(tmp_path / "LS", chapters={("9", "100"): ["HELLO"]})
    trans = src / "9" / "100" / "9-100.trans.txt"
    trans.write_text(trans.read_text() + bad + "\n")
    with pytest.raises(UserError) as e:
        prepare(src, tmp_path / "d")
    assert "9-100.trans.txt:2" in str(e.value)


def test_empty_split_dir_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no <speaker>/<chapter>"):
        prepare(tmp_path / "empty", tmp_path / "d")
    with pytest.raises(UserError, match="does not exist"):
        prepare(tmp_path / "nope", tmp_path / "d")


def test_refuses_to_overwrite_unless_asked(tmp_path):
    src = make_fake_split(tmp_path / "LS")
    dst = tmp_path / "d"
    dst.mkdir()
    (dst / "keep").write_text("x")
    with pytest.raises(UserError, match="--overwrite"):
        prepare(src, dst)
    assert (dst / "keep").is_file()
    prepare(src, dst, overwrite=True)
    assert not (dst / "keep").exists()
    check_kaldi_dir(dst)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".d.")]


def test_cli(tmp_path, capsys):
    from espnet_lw.bin import prep_librispeech

    with pytest.raises(SystemExit) as e:
        prep_librispeech.main(["--help"])
    assert e.value.code == 0 and "SRC_SPLIT_DIR" in capsys.readouterr().out
    src = make_fake_split(tmp_path / "LS")
    run_main(prep_librispeech.main, [str(src), str(tmp_path / "d")])
    check_kaldi_dir(tmp_path / "d")
    with pytest.raises(SystemExit) as e:
        run_main(prep_librispeech.main, [str(src), str(tmp_path / "d")])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "ERROR: " in err and "not empty" in err and "--overwrite" in err


# --------------------------------------------------------------------------
# on the real (tiny) synthetic corpus
# --------------------------------------------------------------------------
@pytest.mark.parametrize("split", ["train", "dev", "test", "field_adapt", "field_test"])
def test_tiny_corpus_splits(make_tiny_data_dir, tiny_corpus, split):
    d = make_tiny_data_dir(split)
    check_kaldi_dir(d)
    n_flac = len(list((tiny_corpus / split).glob("*/*/*.flac")))
    assert len(read_kv(d / "wav.scp")) == n_flac
    genders = set(dict(read_kv(d / "utt2gender")).values())
    assert genders <= {"m", "f"} and genders


def test_data_sh(tiny_corpus, tmp_path):
    """local/data.sh in a copy of the recipe dir, with MINI_SYNTH pointing at the tiny corpus."""
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    recipe = tmp_path / "lw1"
    (recipe / "local").mkdir(parents=True)
    shutil.copy(RECIPE / "db.sh", recipe / "db.sh")
    shutil.copy(RECIPE / "local" / "data.sh", recipe / "local" / "data.sh")
    env = dict(os.environ, MINI_SYNTH=str(tiny_corpus), PYTHON=sys.executable,
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = ["bash", "local/data.sh", "--size", "tiny", "--seed", "0", "--nj", "1"]
    r = subprocess.run(cmd, cwd=recipe, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr + r.stdout
    for split in ("train", "dev", "test", "field_adapt", "field_test"):
        check_kaldi_dir(recipe / "data" / split)
    noise = (recipe / "data/noise/wav.scp").read_text().splitlines()
    assert [line.split()[0] for line in noise] == ["noise-babble-0", "noise-hum-0", "noise-machine-0", "noise-pink-0"]
    r = subprocess.run(cmd, cwd=recipe, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.count("already complete") == 5, r.stdout
    r = subprocess.run(["bash", "local/data.sh", "--bogus"], cwd=recipe, env=env,
                       capture_output=True, text=True)
    assert r.returncode != 0 and "unknown option: --bogus" in r.stderr
    r = subprocess.run(["bash", "local/data.sh", "--help"], cwd=recipe, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0 and "--snr_db_range" in r.stdout
