"""Bad input caught at stages 1-4: a truncated WAV, CRLF and wrong-case transcripts, over-long dev/test
utterances; and every option the stage 3 errors advise exists in the tool and in lw.sh."""

from __future__ import annotations

import re
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")

from test_data_dir_tools import run_cli  # noqa: E402

from espnet_lw.bin import filter_data_dir as filt  # noqa: E402
from espnet_lw.bin import format_wav_scp as fmt  # noqa: E402
from espnet_lw.bin import validate_data_dir as val  # noqa: E402
from espnet_lw.data.audio import load_source, wav_truncation  # noqa: E402
from espnet_lw.data.kaldi_dir import (  # noqa: E402
    apply_case,
    fix_data_dir,
    read_kv,
    transcript_case,
    utt2spk_to_spk2utt,
    validate_data_dir,
    write_kv,
)
from espnet_lw.utils.cli import UserError  # noqa: E402

FS = 16000
LW_SH = Path(__file__).resolve().parents[1] / "egs2" / "TEMPLATE" / "lw1" / "lw.sh"


def _wav(path: Path, n: int, sr: int = FS, channels: int = 1) -> Path:
    x = (np.random.default_rng(0).standard_normal((n, channels)) * 3000).astype(np.int16)
    sf.write(str(path), x, sr, subtype="PCM_16", format="WAV")
    return path


def _data_dir(d: Path, text: dict, wavs: dict | None = None, crlf: bool = False) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    audio = d / "audio"
    audio.mkdir(exist_ok=True)
    wavs = wavs or {u: str(_wav(audio / f"{u}.wav", 8000)) for u in text}
    utt2spk = {u: u.split("-")[0] for u in text}
    write_kv(d / "wav.scp", wavs)
    write_kv(d / "utt2spk", utt2spk)
    write_kv(d / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    write_kv(d / "text", text)
    if crlf:
        (d / "text").write_bytes((d / "text").read_bytes().replace(b"\n", b"\r\n"))
    return d


# ------------------------------------------------------------------------------ truncated audio
def test_truncated_wav_is_an_error_naming_the_file(tmp_path, capsys):
    whole = _wav(tmp_path / "whole.wav", 16000)
    cut = tmp_path / "a-cut.wav"
    cut.write_bytes(whole.read_bytes()[: 44 + 2 * 6000])  # header says 16000 samples, 6000 are there
    assert wav_truncation(str(whole)) is None
    assert wav_truncation(str(cut)) == (16000, 6000, FS)
    with pytest.raises(UserError, match="truncated WAV") as e:
        load_source(str(cut), "utterance 'a-cut'")
    assert str(cut) in str(e.value) and "16000 samples" in str(e.value)
    # stage 3 (format_wav_scp) stops on it, naming the utterance and the file, and writes nothing
    src = _data_dir(tmp_path / "data", {"a-cut": "HELLO", "a-ok": "WORLD"},
                    {"a-cut": str(cut), "a-ok": str(whole)})
    code, err = run_cli(fmt.main, ["--nj", "1", str(src), str(tmp_path / "dump")], capsys)
    assert code == 1 and "truncated WAV" in err and str(cut) in err and "a-cut" in err
    assert not (tmp_path / "dump").exists()


def test_streamed_wav_header_without_a_length_is_not_truncation(tmp_path):
    buf = bytearray(_wav(tmp_path / "s.wav", 1000).read_bytes())
    data_at = buf.index(b"data")
    buf[data_at + 4:data_at + 8] = struct.pack("<I", 0xFFFFFFFF)  # what a pipe writes
    (tmp_path / "s.wav").write_bytes(bytes(buf))
    assert wav_truncation(str(tmp_path / "s.wav")) is None
    assert wav_truncation(str(tmp_path / "nothing.wav")) is None
    (tmp_path / "x.flac").write_bytes(b"fLaC")
    assert wav_truncation(str(tmp_path / "x.flac")) is None


# ------------------------------------------------------------------------------ transcripts
def test_crlf_transcripts_are_an_error_and_fix_removes_them(tmp_path):
    d = _data_dir(tmp_path / "dev", {"a-1": "HELLO WORLD", "a-2": "YES"}, crlf=True)
    problems = validate_data_dir(d)
    assert any("carriage return" in p and "2 line(s)" in p and str(d / "text") in p for p in problems)
    report = fix_data_dir(d)
    assert any("carriage returns from 2 line(s)" in n for n in report.notes)
    assert validate_data_dir(d) == []
    assert b"\r" not in (d / "text").read_bytes() and read_kv(d / "text")["a-1"] == "HELLO WORLD"


def test_mixed_case_transcripts_are_an_error(tmp_path):
    d = _data_dir(tmp_path / "train", {"a-1": "HELLO WORLD", "a-2": "good morning", "a-3": "YES <unk>"})
    problems = validate_data_dir(d)
    assert any("mix upper case (2" in p and "lower case (1" in p and "a-2" in p for p in problems)
    assert transcript_case("YES <unk> [noise]") == "upper" and transcript_case("Hello") == "mixed"
    assert transcript_case("<unk> 123") is None
    # a cased corpus (every line "Mixed Case") and tags in another case are fine
    ok = _data_dir(tmp_path / "cased", {"a-1": "Hello World", "a-2": "Good <unk> morning"})
    assert validate_data_dir(ok) == []


def test_dev_set_in_another_case_than_train_is_refused_then_fixed(tmp_path, capsys):
    train = _data_dir(tmp_path / "train", {"a-1": "HELLO WORLD", "a-2": "GOOD MORNING"})
    dev = _data_dir(tmp_path / "dev", {"b-1": "hello world", "b-2": "yes <unk>"})
    code, err = run_cli(val.main, ["--same_case_as", str(train), str(dev)], capsys)
    assert code == 1
    assert "2 transcript(s) not in upper case" in err and str(dev / "text") in err and "b-1" in err
    assert "--fix --case upper" in err
    code, err = run_cli(val.main, ["--fix", "--case", "upper", str(dev)], capsys)
    assert code == 0, err
    assert "2 transcript(s) converted to upper case" in err
    assert read_kv(dev / "text") == {"b-1": "HELLO WORLD", "b-2": "YES <unk>"}
    assert run_cli(val.main, ["--same_case_as", str(train), str(dev)], capsys)[0] == 0
    assert apply_case("yes <unk> [laughter] no", "upper") == "YES <unk> [laughter] NO"


# ------------------------------------------------------------------------------ over-long dev/test utterances
def _dump_dir(d: Path, secs: dict) -> Path:
    d.mkdir(parents=True)
    write_kv(d / "utt2num_samples", {u: str(int(s * FS)) for u, s in secs.items()})
    write_kv(d / "wav.scp", {u: f"{u}.flac" for u in secs})
    return d


def test_overlong_eval_utterances_are_an_error(tmp_path, capsys):
    dev = _dump_dir(tmp_path / "dev", {"d-1": 5.0, "d-2": 75.5})
    test = _dump_dir(tmp_path / "test", {"t-1": 3.0})
    code, err = run_cli(filt.main, ["--check_only", "--fs", str(FS), "--max_wav_duration", "60", str(test), str(dev)],
                     capsys)
    assert code == 1
    assert "1 of 2 utterance(s) are longer than 60s" in err and "d-2 (75.5s)" in err and str(dev) in err
    assert "--max_eval_wav_duration" in err
    code, err = run_cli(filt.main, ["--check_only", "--fs", str(FS), "--max_wav_duration", "80", str(test), str(dev)],
                     capsys)
    assert code == 0, err
    assert sorted(p.name for p in dev.iterdir()) == ["utt2num_samples", "wav.scp"]  # nothing written
    with pytest.raises(UserError, match="exactly one DST"):
        filt.main([str(test), str(dev), str(tmp_path / "x")])


# ------------------------------------------------------------------------------ advised options exist
def _advised_options(message: str) -> set:
    fix = message.split("fix:", 1)[-1]
    return set(re.findall(r"(--[a-z_]+)", fix))


def test_options_advised_by_stage_3_errors_exist(tmp_path, capsys):
    """The sample-rate and channel errors advise --resample / --channel / --fs: format_wav_scp has them,
    and so does lw.sh (which passes them on in stage 3)."""
    audio = tmp_path / "audio"
    audio.mkdir()
    rate = _data_dir(tmp_path / "rate", {"a-1": "X"}, {"a-1": str(_wav(audio / "r.wav", 4000, sr=8000))})
    stereo = _data_dir(tmp_path / "stereo", {"a-1": "X"}, {"a-1": str(_wav(audio / "s.wav", 4000, channels=2))})
    advised = set()
    for src in (rate, stereo):
        code, err = run_cli(fmt.main, ["--nj", "1", str(src), str(tmp_path / f"dump_{src.name}")], capsys)
        assert code == 1
        advised |= _advised_options(err)
    assert {"--resample", "--channel", "--fs"} <= advised
    tool = {a for act in fmt.get_parser()._actions for a in act.option_strings}
    assert advised <= tool
    help_text = subprocess.run(["bash", str(LW_SH), "--help"], capture_output=True, text=True).stdout
    lw_options = set(re.findall(r"(--[a-z_]+)", help_text))
    assert advised <= lw_options, advised - lw_options
    body = LW_SH.read_text()
    assert '--resample "${resample}"' in body and 'channel_args=(--channel "${channel}")' in body
    assert "--same_case_as" in body and "--check_only" in body
