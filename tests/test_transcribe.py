"""The ``transcribe`` command: files, directories and wav.scp in, one line per utterance out; bad
files reported one line each while the others are transcribed; no torch or ESPnet imported; long
audio in bounded memory; cold start. Uses the tiny ONNX model of tiny_onnx.py (no GPU, no network)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tiny_onnx

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = ("torch", "torchaudio", "espnet", "espnet2", "librosa")

# runs the CLI in this process, then reports the exit code, which forbidden packages were imported
# and the peak resident memory (KiB; VmHWM: ru_maxrss would include the forking parent's) to the
# JSON file in argv[1]
WRAPPER = r"""
import json, sys
report, sys.argv = sys.argv[1], ["transcribe"] + sys.argv[2:]
code = 0
try:
    from espnet_lw.bin.transcribe import main
    main()
except SystemExit as e:
    code = e.code or 0
mods = sorted(m for m in sys.modules if m.split(".")[0] in %r)
with open(report, "w") as f:
    hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")]
    json.dump({"code": code, "forbidden": mods, "maxrss_kb": int(hwm[0]) if hwm else None}, f)
sys.exit(code)
""" % (FORBIDDEN,)


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))


def run_cli(tmp_path, *args):
    """(exit code, stdout, stderr, report) of the CLI run in a fresh python process."""
    report = tmp_path / f"report{time.monotonic_ns()}.json"
    p = subprocess.run([sys.executable, "-c", WRAPPER, str(report), *map(str, args)], capture_output=True,
                       text=True, env=_env(), cwd=tmp_path, timeout=300)
    rep = json.loads(report.read_text())
    assert rep["code"] == p.returncode
    return p.returncode, p.stdout, p.stderr, rep


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_onnx.write_model(tmp_path_factory.mktemp("model") / "tiny_onnx")


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """Three utterances made as mini_synth makes its corpus (16 kHz 16-bit FLAC)."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("needs espeak-ng and sox (Debian packages espeak-ng sox flac)")
    from espnet_lw.data.synth import Job, synth_one

    out = tmp_path_factory.mktemp("speech")
    texts = ["the quick brown fox jumps over the lazy dog", "seven bright lanterns hang above the harbour",
             "numbers like forty two are spoken slowly"]
    for i, text in enumerate(texts):
        synth_one(Job(f"s{i}", f"spk/ch/s{i}.flac", text, "en-us+m3", 150 + 10 * i, 50, -20.0, None, i), str(out))
    return out


def _lines(stdout):
    return dict(line.split(" ", 1) if " " in line else (line, "") for line in stdout.splitlines())


def test_transcribe_files_dir_scp_without_torch(tmp_path, model_dir, speech):
    files = sorted((speech / "spk" / "ch").glob("*.flac"))
    code, out, err, rep = run_cli(tmp_path, model_dir, *files)
    assert code == 0, err
    assert rep["forbidden"] == [], f"transcribing imported {rep['forbidden']}"
    hyp = _lines(out)
    assert list(hyp) == ["s0", "s1", "s2"]
    assert all(set(t) == {"a"} for t in hyp.values()), hyp  # the tiny model says "a" for each burst
    assert "ERROR" not in err

    # a directory (recursive), and a wav.scp; same transcripts
    _, out_dir, _, _ = run_cli(tmp_path, model_dir, speech)
    assert _lines(out_dir) == hyp
    scp = tmp_path / "wav.scp"
    scp.write_text("".join(f"utt{i} {f}\n" for i, f in enumerate(files)))
    _, out_scp, _, _ = run_cli(tmp_path, model_dir, scp)
    assert _lines(out_scp) == {f"utt{i}": hyp[f.stem] for i, f in enumerate(files)}


def test_transcribe_bad_files_are_reported_and_others_done(tmp_path, model_dir, speech):
    good = speech / "spk" / "ch" / "s0.flac"
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF....WAVEfmt nonsense")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.int16), 16000)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(32000, dtype=np.int16), 16000)
    missing = tmp_path / "missing.flac"
    code, out, err, rep = run_cli(tmp_path, model_dir, garbage, good, empty, silent, missing)
    assert code == 1
    assert rep["forbidden"] == []
    assert list(_lines(out)) == ["s0"]
    errors = [line for line in err.splitlines() if line.startswith("ERROR:")]
    for path, why in [(garbage, "cannot read audio"), (empty, "empty audio"), (silent, "silent audio"),
                      (missing, "no such file")]:
        assert sum(str(path) in e and why in e for e in errors) == 1, (path, err)
    assert len(errors) == 5  # four files + the summary


def test_transcribe_options(tmp_path, model_dir, speech):
    files = sorted((speech / "spk" / "ch").glob("*.flac"))
    # resampled / mixed-down input gets a note and the same kind of transcript
    wave, sr = sf.read(files[0], dtype="float32")
    stereo = tmp_path / "stereo44k.wav"
    subprocess.run(["sox", str(files[0]), "-r", "44100", "-c", "2", str(stereo)], check=True)
    out_file = tmp_path / "out" / "hyp.jsonl"
    out_file.parent.mkdir()
    code, out, err, _ = run_cli(tmp_path, model_dir, stereo, *files, "--jsonl", "--output", out_file,
                                "--precision", "int8", "--threads", "2")
    assert code == 0, err
    assert out == ""
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [r["uttid"] for r in rows] == ["stereo44k", "s0", "s1", "s2"]
    assert set(rows[0]) == {"uttid", "text", "duration", "seconds", "rtf", "path"}
    assert abs(rows[1]["duration"] - len(wave) / sr) < 1e-3 and abs(rows[0]["duration"] - rows[1]["duration"]) < 1e-3
    assert all(r["seconds"] > 0 and r["rtf"] > 0 and set(r["text"]) == {"a"} for r in rows)
    notes = [line for line in err.splitlines() if "note:" in line]
    assert len(notes) == 1 and "stereo44k.wav" in notes[0] and "mixed down" in notes[0] and "resampled" in notes[0]

    # prefix beam search, and the model given as a zip
    zipped = tiny_onnx.zip_model(model_dir, tmp_path / "tiny.zip", "tiny_onnx")
    code, out_beam, err, _ = run_cli(tmp_path, zipped, *files, "--decode", "beam", "--beam_size", "4")
    assert code == 0, err
    assert list(_lines(out_beam)) == ["s0", "s1", "s2"]
    assert all(t and set(t) == {"a"} for t in _lines(out_beam).values())


def test_transcribe_refuses_pipes_and_bad_models(tmp_path, model_dir, speech):
    scp = tmp_path / "wav.scp"
    scp.write_text(f"u1 {speech / 'spk/ch/s0.flac'}\nu2 sox a.flac -t wav - |\n")
    code, out, err, _ = run_cli(tmp_path, model_dir, scp, speech / "spk/ch/s1.flac")
    assert code == 1
    assert list(_lines(out)) == ["s1"]
    assert "wav.scp" in err and "u2" in err and "command" in err
    code, out, err, _ = run_cli(tmp_path, speech, speech / "spk/ch/s1.flac")
    assert code == 1 and out == ""
    assert err.strip().startswith("ERROR:") and "no meta.json" in err and "Traceback" not in err
    code, out, err, _ = run_cli(tmp_path, model_dir, speech, "--window_seconds", "0.5")
    assert code == 1 and out == "" and "--window_seconds" in err


def test_help():
    p = subprocess.run([sys.executable, "-m", "espnet_lw.bin.transcribe", "--help"], capture_output=True,
                       text=True, env=_env(), timeout=120)
    assert p.returncode == 0
    for opt in ("--precision", "--threads", "--decode", "--beam_size", "--jsonl", "--output"):
        assert opt in p.stdout
    assert "transcribe=espnet_lw.bin.transcribe:main" in (REPO / "setup.py").read_text()


def _long_file(path: Path, speech: Path, minutes: float):
    """Speech utterances with pauses, repeated for ``minutes``, written block by block."""
    utts = [sf.read(f, dtype="int16")[0] for f in sorted((speech / "spk" / "ch").glob("*.flac"))]
    unit = np.concatenate([np.concatenate([u, np.zeros(8000, dtype=np.int16)]) for u in utts])
    total = int(minutes * 60 * 16000)
    with sf.SoundFile(path, "w", 16000, 1, "PCM_16") as f:
        written = 0
        while written < total:
            chunk = unit[: total - written]
            f.write(chunk)
            written += len(chunk)
    return len(unit) / 16000


def test_long_audio_memory_does_not_grow(tmp_path, model_dir, speech):
    short, long_ = tmp_path / "one_minute.wav", tmp_path / "eight_minutes.wav"
    _long_file(short, speech, 1)
    unit_seconds = _long_file(long_, speech, 8)
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc/self/status (Linux) for the peak resident memory")
    rss = {}
    for f in (short, long_):
        code, out, err, rep = run_cli(tmp_path, model_dir, f, "--jsonl")
        assert code == 0, err
        row = json.loads(out)
        rss[f.stem] = rep["maxrss_kb"] / 1024
    assert abs(row["duration"] - 480.0) < 0.01
    code, out10, err, _ = run_cli(tmp_path, model_dir, short, "--window_seconds", "10")
    assert code == 0, err
    assert len(_lines(out10)["one_minute"].split()) >= 6
    words = row["text"].split()  # one word per window (the tiny model's texts are joined with a space)
    assert len(words) >= 480 / 20
    assert sum(len(w) for w in words) >= 0.8 * 3 * 480 / unit_seconds  # every utterance is heard
    print(f"peak RSS: 1 min {rss['one_minute']:.1f} MiB, 8 min {rss['eight_minutes']:.1f} MiB")
    # holding 8 minutes would need > 26 MiB more (float32 samples alone)
    assert rss["eight_minutes"] - rss["one_minute"] < 8.0


def test_cold_start(tmp_path, model_dir, speech):
    """Process start to the first transcript line of a 5 s file (reported; bounded loosely: CI machines vary)."""
    five = tmp_path / "five.wav"
    wave = sf.read(speech / "spk/ch/s0.flac", dtype="int16")[0]
    sf.write(five, np.resize(wave, 5 * 16000), 16000)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-m", "espnet_lw.bin.transcribe", str(model_dir), str(five)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env())
        line = p.stdout.readline()
        best = min(best, time.perf_counter() - t0)
        p.wait(timeout=60)
        assert line.startswith("five ")
    print(f"cold start (process start -> first line, 5 s file, best of 3): {best:.2f} s")
    assert best < 10.0
