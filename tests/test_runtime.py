"""espnet_lw.runtime pieces: numpy log-mel vs ESPnet's DefaultFrontend, resampling, reading audio
(checks, notes, pause-cut windows in bounded memory), token ids -> text, loading exported models."""

from __future__ import annotations

import json
import logging
import shutil
import tracemalloc
import zipfile

import numpy as np
import pytest
import soundfile as sf
import tiny_onnx

from espnet_lw.runtime.audio import PauseCutter, read_windows
from espnet_lw.runtime.features import Fbank, FbankConfig, mel_filterbank
from espnet_lw.runtime.resample import Resampler, resample
from espnet_lw.utils.cli import UserError

# the tolerance stated for the numpy frontend: log-mel within 1e-3 of ESPnet's wherever the mel
# power is above 1e-8 (below, both are near the 1e-10 floor and float32 FFT rounding dominates)
LOGMEL_TOL = 1e-3
POWER_FLOOR = 1e-8


def _need_tts():
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("needs espeak-ng and sox (Debian packages espeak-ng sox flac)")


@pytest.fixture(scope="module")
def corpus_audio(tmp_path_factory):
    """Three utterances made exactly as mini_synth makes its corpus (16 kHz 16-bit FLAC)."""
    _need_tts()
    from espnet_lw.data.synth import Job, synth_one

    out = tmp_path_factory.mktemp("speech")
    jobs = [
        Job("u1", "u1.flac", "the quick brown fox jumps over the lazy dog", "en-us+m3", 160, 50, -20.0, None, 1),
        Job("u2", "u2.flac", "seven bright lanterns hang above the quiet harbour", "en-gb+f2", 145, 65, -26.0,
            10.0, 2),
        Job("u3", "u3.flac", "numbers like forty two are spoken slowly", "en-gb-x-rp+m1", 185, 35, -16.0, None, 3),
    ]
    return [out / synth_one(j, str(out))[0].replace(j.uttid, j.path) for j in jobs]


# --------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------
@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax,htk", [
    (16000, 512, 80, 0, 8000, False), (16000, 400, 40, 20, None, False), (8000, 256, 23, 0, None, True)])
def test_mel_filterbank_is_librosas(sr, n_fft, n_mels, fmin, fmax, htk):
    librosa = pytest.importorskip("librosa")
    ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax, htk)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk)
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-9)


def _espnet_fbank(wave: np.ndarray, **conf) -> np.ndarray:
    torch = pytest.importorskip("torch")
    from espnet2.asr.frontend.default import DefaultFrontend

    fe = DefaultFrontend(**conf).eval()
    with torch.no_grad():
        feats, lens = fe(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
    assert int(lens[0]) == feats.shape[1]
    return feats[0].numpy()


@pytest.mark.parametrize("conf", [
    dict(fs=16000, n_fft=512, win_length=400, hop_length=160, n_mels=80),  # conf/reference_*.yaml
    dict(fs=16000, n_fft=512, hop_length=128, n_mels=80),  # ESPnet's defaults (win_length = n_fft)
], ids=["project", "espnet_default"])
def test_fbank_matches_espnet_default_frontend(corpus_audio, conf):
    fb = Fbank(FbankConfig(sample_rate=conf["fs"], n_fft=conf["n_fft"], win_length=conf.get("win_length") or
                           conf["n_fft"], hop_length=conf["hop_length"], n_mels=conf["n_mels"]))
    worst = 0.0
    for path in corpus_audio:
        wave, sr = sf.read(path, dtype="float32")  # what ESPnet's sound loader gives: int16 / 32768
        assert sr == 16000
        ref = _espnet_fbank(wave, **conf)
        ours = fb(wave)
        assert ours.dtype == np.float32 and ours.shape == ref.shape
        power = fb.power(wave) @ fb.melmat
        diff = np.abs(ours - ref)
        worst = max(worst, float(diff[power > POWER_FLOOR].max()))
        assert float(diff.max()) < 0.05  # even at the 1e-10 floor
    print(f"numpy log-mel vs ESPnet DefaultFrontend: max |diff| {worst:.2e} where power > {POWER_FLOOR:g}")
    assert worst <= LOGMEL_TOL


def test_fbank_from_meta_and_short_input():
    cfg = FbankConfig.from_meta(tiny_onnx.meta()["frontend"], 16000)
    assert (cfg.n_fft, cfg.win_length, cfg.hop_length, cfg.n_mels, cfg.fmax) == (512, 400, 160, 80, 8000.0)
    with pytest.raises(ValueError, match="window"):
        FbankConfig.from_meta({"window": "hamming"}, 16000)
    fb = Fbank(cfg)
    assert fb(np.zeros(0, dtype=np.float32)).shape == (1, 80)
    assert fb(np.ones(1000, dtype=np.float32)).shape == (1000 // 160 + 1, 80)
    assert np.allclose(fb(np.zeros(3200, dtype=np.float32)), np.log(1e-10))


# --------------------------------------------------------------------------
# resampling
# --------------------------------------------------------------------------
def _tone(sr, freq, seconds=1.0, amp=0.5):
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _spectrum_db(y, sr):
    """(peak frequency, peak level in dB re an amplitude-1 sine) of y with a Hann window."""
    y = y[len(y) // 10 : -len(y) // 10]  # leave the edges out
    w = np.hanning(len(y))
    s = np.abs(np.fft.rfft(y * w)) / (w.sum() / 2)
    return np.fft.rfftfreq(len(y), 1 / sr)[s.argmax()], 20 * np.log10(s.max() + 1e-20)


@pytest.mark.parametrize("sr_in", [8000, 11025, 22050, 44100, 48000, 44101])
def test_resample_keeps_frequency_and_level(sr_in):
    x = _tone(sr_in, 1000.0)
    y = resample(x, sr_in, 16000)
    assert len(y) == -(-len(x) * 16000 // sr_in)
    freq, level = _spectrum_db(y, 16000)
    assert abs(freq - 1000.0) <= 1.0
    assert abs(level - 20 * np.log10(0.5)) < 0.1


@pytest.mark.parametrize("sr_in,freq", [(44100, 12000.0), (48000, 9000.0), (22050, 10000.0), (44101, 15000.0)])
def test_resample_removes_tones_above_the_new_nyquist(sr_in, freq):
    y = resample(_tone(sr_in, freq, amp=1.0), sr_in, 16000)
    _, level = _spectrum_db(y, 16000)
    assert level < -40.0, f"{freq} Hz from {sr_in} Hz aliased at {level:.1f} dB"


@pytest.mark.parametrize("sr_in", [44100, 8000, 44101])
def test_resample_streaming_equals_whole(sr_in):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(sr_in * 2).astype(np.float32) * 0.1
    whole = resample(x, sr_in)
    r = Resampler(sr_in)
    parts, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 5000))
        parts.append(r.push(x[i : i + n]))
        i += n
    parts.append(r.flush())
    streamed = np.concatenate(parts)
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, atol=1e-6)


def test_resample_identity():
    x = np.arange(10, dtype=np.float32)
    assert resample(x, 16000, 16000) is not None and np.array_equal(resample(x, 16000, 16000), x)


def test_resampler_designs_its_filter_once_per_conversion():
    # the runtime opens a Resampler per file: same rate designs nothing, a conversion is designed once
    from espnet_lw.runtime import resample as rs

    rs._design.cache_clear()
    same = Resampler(16000, 16000)
    assert same.identity and rs._design.cache_info().misses == 0
    x = np.linspace(-0.5, 0.5, 4410, dtype=np.float32)
    outs = [np.concatenate([r.push(x), r.flush()]) for r in (Resampler(44100), Resampler(44100))]
    assert rs._design.cache_info().misses == 1 and rs._design.cache_info().hits == 1
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not Resampler(44100).taps.flags.writeable  # shared between resamplers: read-only


# --------------------------------------------------------------------------
# reading audio
# --------------------------------------------------------------------------
def test_pause_cutter_cuts_in_the_pause():
    sr = 16000
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(sr * 50) * 0.3).astype(np.float32)
    x[int(17.5 * sr) : int(17.8 * sr)] *= 1e-3  # a pause inside the search region of the first window
    cutter = PauseCutter(20 * sr, 4 * sr)
    windows = []
    for i in range(0, len(x), 12345):
        windows += cutter.push(x[i : i + 12345])
    windows += cutter.flush()
    assert all(len(w) <= 20 * sr for w in windows)
    assert 17.5 * sr <= len(windows[0]) <= 17.8 * sr
    np.testing.assert_array_equal(np.concatenate(windows), x)


def test_read_windows_short_file_is_the_file(corpus_audio):
    wave, _ = sf.read(corpus_audio[0], dtype="float32")
    windows = list(read_windows(str(corpus_audio[0])))
    assert len(windows) == 1
    np.testing.assert_array_equal(windows[0], wave)


def test_read_windows_reads_every_block_in_order(tmp_path):
    # 9.3 s at 16 kHz is read in 2 s blocks (the last one short): the window is the file, sample for sample
    rng = np.random.default_rng(3)
    wave = (rng.standard_normal(int(9.3 * 16000)) * 0.1).astype(np.float32)
    path = tmp_path / "blocks.flac"
    sf.write(path, wave, 16000, subtype="PCM_16")
    expect, _ = sf.read(path, dtype="float32")
    windows = list(read_windows(str(path), max_seconds=20.0))
    assert len(windows) == 1
    np.testing.assert_array_equal(windows[0], expect)


def test_read_windows_mixes_down_and_resamples_with_a_note(tmp_path, caplog):
    stereo = np.stack([_tone(44100, 440.0, 2.0), _tone(44100, 440.0, 2.0)], axis=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, 44100, subtype="PCM_16")
    with caplog.at_level(logging.INFO, logger="espnet_lw.runtime.audio"):
        windows = list(read_windows(str(path)))
    assert len(windows) == 1 and len(windows[0]) == 32000
    freq, level = _spectrum_db(windows[0], 16000)
    assert abs(freq - 440.0) <= 1.0 and abs(level - 20 * np.log10(0.5)) < 0.1
    notes = [r.getMessage() for r in caplog.records if "note" in r.getMessage()]
    assert len(notes) == 1
    assert "stereo.wav" in notes[0] and "2 channels mixed down" in notes[0] and "44100 Hz to 16000 Hz" in notes[0]


def test_read_windows_bad_files(tmp_path):
    garbage = tmp_path / "garbage.wav"
    garbage.write_text("this is not audio\n")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.int16), 16000)
    silent = tmp_path / "silent.flac"
    sf.write(silent, np.zeros(16000, dtype=np.int16), 16000)
    faint = tmp_path / "faint.wav"
    sf.write(faint, np.full(16000, 2e-5, dtype=np.float32), 16000, subtype="FLOAT")
    whole = tmp_path / "whole.flac"
    sf.write(whole, (np.random.default_rng(0).standard_normal(16000 * 10) * 3000).astype(np.int16), 16000)
    truncated = tmp_path / "truncated.flac"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    for path, what in [(garbage, "cannot read audio"), (empty, "empty audio"), (silent, "silent audio"),
                       (faint, "silent audio"), (tmp_path / "missing.wav", "cannot read audio"),
                       (truncated, "cannot read audio after")]:
        with pytest.raises(UserError, match=what) as e:
            list(read_windows(str(path)))
        assert str(path) in e.value.format() and "\n" not in e.value.format()


def _write_long(path, minutes, sr=44100, channels=2):
    """Speech-like bursts (0.8 s tone + noise) with 0.4 s pauses, written block by block."""
    rng = np.random.default_rng(0)
    t = np.arange(int(0.8 * sr)) / sr
    burst = (0.3 * np.sin(2 * np.pi * 300 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    unit = np.concatenate([burst, np.zeros(int(0.4 * sr), dtype=np.float32)])
    block = np.tile(unit, 50)  # 60 s
    with sf.SoundFile(path, "w", sr, channels, "PCM_16") as f:
        for _ in range(minutes):
            f.write(np.repeat(block[:, None], channels, axis=1))


def _peak_traced(path):
    tracemalloc.start()
    try:
        n, longest = 0, 0
        for w in read_windows(str(path)):
            n += len(w)
            longest = max(longest, len(w))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, n, longest


def test_read_windows_memory_does_not_grow_with_length(tmp_path):
    short, long_ = tmp_path / "1min.wav", tmp_path / "4min.wav"
    _write_long(short, 1)
    _write_long(long_, 4)
    peak1, n1, _ = _peak_traced(short)
    peak4, n4, longest = _peak_traced(long_)
    assert abs(n1 - 60 * 16000) <= 1 and abs(n4 - 240 * 16000) <= 1
    assert longest <= 20 * 16000
    print(f"tracemalloc peak while reading: 1 min {peak1 / 2**20:.1f} MiB, 4 min {peak4 / 2**20:.1f} MiB")
    # reading 4 min whole would need >= 15 MiB more (float32 mono at 16 kHz alone)
    assert peak4 < peak1 * 1.2 + 2**20


# --------------------------------------------------------------------------
# model loading and text
# --------------------------------------------------------------------------
def test_token_text_char_and_bpe():
    from espnet_lw.runtime.model import TokenText

    toks = ["<blank>", "<unk>", "<space>", "a", "b", "<sos/eos>"]
    t = TokenText(toks, "char")
    assert t([3, 2, 4, 2, 2, 1, 5, 0, 3]) == "a b <unk>a"
    bpe = TokenText(["<blank>", "<unk>", "\u2581he", "llo", "\u2581world", "<sos/eos>"], "bpe")
    assert bpe([2, 3, 4, 5, 0]) == "hello world"
    with pytest.raises(UserError, match="token_type"):
        TokenText(toks, "word")


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return tiny_onnx.write_model(tmp_path_factory.mktemp("tiny") / "exported", default_precision="int8")


def test_load_model_dir_and_zip(tiny_model_dir, tmp_path):
    from espnet_lw.runtime import load_model  # lazily from the package

    m = load_model(tiny_model_dir)
    assert m.precision == "int8" and m.vocab_size == len(tiny_onnx.TOKENS)
    assert load_model(tiny_model_dir, precision="fp32").precision == "fp32"
    x = np.zeros(16000, dtype=np.float32)
    x[4000:12000] = 0.1 * np.random.default_rng(0).standard_normal(8000)  # one burst of noise: "a"
    lp = m.log_probs(m.features(x))
    assert lp.shape == ((16000 // 160 + 1 + 3) // 4, len(tiny_onnx.TOKENS))
    assert m.transcribe_samples(x) == "a"
    for prefix in ("", "student_r83_onnx"):
        z = tiny_onnx.zip_model(tiny_model_dir, tmp_path / f"m{len(prefix)}.zip", prefix)
        mz = load_model(z, precision="fp32", threads=2)
        assert mz.transcribe_samples(x) == "a"
        assert mz.session.get_session_options().intra_op_num_threads == 2


def test_load_model_errors(tiny_model_dir, tmp_path):
    from espnet_lw.runtime.model import load_model

    with pytest.raises(UserError, match="no such model"):
        load_model(tmp_path / "nope")
    with pytest.raises(UserError, match="no meta.json"):
        load_model(tmp_path)
    pack = tmp_path / "pack.zip"
    with zipfile.ZipFile(pack, "w") as z:
        z.writestr("exp/asr_train/valid.acc.ave.pth", b"x")
    with pytest.raises(UserError, match="ESPnet pack"):
        load_model(pack)
    bad = shutil.copytree(tiny_model_dir, tmp_path / "bad")
    meta = json.loads((bad / "meta.json").read_text())
    (bad / "meta.json").write_text(json.dumps(dict(meta, format="other/9")))
    with pytest.raises(UserError, match="unsupported model format"):
        load_model(bad)
    (bad / "meta.json").write_text(json.dumps(meta))
    (bad / "model.int8.onnx").unlink()
    with pytest.raises(UserError, match="no model.int8.onnx"):
        load_model(bad)
    with pytest.raises(UserError, match="precision"):
        load_model(tiny_model_dir, precision="fp16")


def test_short_waves_are_padded(tiny_model_dir):
    from espnet_lw.runtime.model import load_model

    m = load_model(tiny_model_dir, precision="fp32")
    for n in (1, 100, 1000):
        assert m.transcribe_samples(np.full(n, 0.1, dtype=np.float32)) in ("", "a")


def test_collect_inputs(tmp_path):
    from espnet_lw.runtime.transcribe import collect_inputs

    for rel in ("a/x.wav", "b/x.flac", "b/c/y.wav", "b/notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "empty_dir").mkdir()
    scp = tmp_path / "wav.scp"
    scp.write_text(f"u1 {tmp_path / 'a/x.wav'}\n\nu2 {tmp_path / 'b/c/y.wav'}\n")
    utts, errors = collect_inputs([str(tmp_path / "a"), str(tmp_path / "b"), str(scp),
                                   str(tmp_path / "empty_dir"), str(tmp_path / "nope.wav")])
    assert [(u.uttid, u.path.replace(str(tmp_path) + "/", "")) for u in utts] == [
        ("x", "a/x.wav"), ("y", "b/c/y.wav"), ("x-2", "b/x.flac"), ("u1", "a/x.wav"), ("u2", "b/c/y.wav")]
    assert [e.path for e in errors] == [str(tmp_path / "empty_dir"), str(tmp_path / "nope.wav")]
    bad = tmp_path / "bad.scp"
    bad.write_text("u1 a.wav\nlonely\n")
    _, errors = collect_inputs([str(bad)])
    assert "line 2" in errors[0].format()
