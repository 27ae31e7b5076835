"""Tests of the TED-LIUM data preparation (espnet_lw.data.tedlium, bin/prep_tedlium) and of the
egs2/tedlium2/lw1 recipe (local/data.sh, run.sh stages 1-13 with a tiny model) on a small fixture tree in the real
on-disk format: NIST SPHERE ``.sph`` files (NIST_1A header + 16-bit PCM) and ``.stm`` files with
the odd lines real TED-LIUM stms have."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import recipe_runs
from recipe_runs import run

from espnet_lw.data import tedlium
from espnet_lw.data.kaldi_dir import read_kv, validate_data_dir
from espnet_lw.utils.cli import UserError

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2" / "tedlium2" / "lw1"
FS = 16000

WORDS = ("the quick brown fox jumps over lazy dog we have many words about science music people "
         "water light energy planet ocean story future world idea design change").split()


# --------------------------------------------------------------------------------------- fixtures
def write_sph(path: Path, seconds: float, seed: int = 0, fs: int = FS) -> Path:
    """A NIST SPHERE file: 1024-byte NIST_1A header + little-endian 16-bit PCM (low noise + tones)."""
    n = int(round(seconds * fs))
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs
    bursts = np.sin(2 * np.pi * 0.5 * t) > 0
    x = 0.05 * rng.standard_normal(n) + 0.2 * np.sin(2 * np.pi * (200 + 50 * seed) * t) * bursts
    pcm = np.clip(x * 32767, -32768, 32767).astype("<i2")
    fields = [
        "database_id -s7 TEDLIUM",
        "channel_count -i 1",
        f"sample_count -i {n}",
        f"sample_rate -i {fs}",
        "sample_n_bytes -i 2",
        "sample_byte_format -s2 01",
        "sample_coding -s3 pcm",
        "sample_sig_bits -i 16",
        "end_head",
    ]
    header = ("NIST_1A\n   1024\n" + "\n".join(fields) + "\n").encode("ascii")
    header += b" " * (1024 - len(header))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + pcm.tobytes())
    return path


def sentence(i: int, n: int = 6) -> str:
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(n))


# Talk with every odd stm line: (line, expected outcome)
ODD_TALK = "AlGore_2009"
ODD_STM = [
    ";;",
    ';; LABEL "o" "Overall" "Overall results"',
    f"{ODD_TALK} 1 {ODD_TALK} 0.00 1.50 <o,f0,male> ignore_time_segment_in_scoring",
    f"{ODD_TALK} 1 inter_segment_gap 1.50 2.00 <o,f0,>",
    f"{ODD_TALK} 1 {ODD_TALK} 2.00 5.30 <o,f0,male> so {{NOISE}} it 's the(2) <unk> thing   \t ",
    f"{ODD_TALK} 1 {ODD_TALK} 5.30 8.00 <o,f0,male>",
    f"{ODD_TALK} 1 {ODD_TALK} 8.00 11.25 <F0_M> We Have <sil> MANY words {{BREATH}} ({ODD_TALK}-3)",
    f"{ODD_TALK} 1 {ODD_TALK} 11.00 14.00 <o,f0,male> overlapping segment one",
    f"{ODD_TALK} 1 {ODD_TALK} 14.10 17.00 <unk> no label on this line",
    f"{ODD_TALK} 1 {ODD_TALK} 14.10 17.00 <o,f0,male> a duplicate of the line before",
    f"{ODD_TALK} 1 {ODD_TALK} 17.50 17.50 <o,f0,male> zero length",
    f"{ODD_TALK} 1 {ODD_TALK} 18.00 19.50 <o,f0,male> <sil>",
    f"{ODD_TALK} 1 {ODD_TALK} 19.50 21.40 <o,f0,male> past the end of the audio",
    "",
]
ODD_SECONDS = 21.0  # the last line overshoots the recording by 0.4 s
ODD_TEST_TALK = "OddTalk_2013"  # the same odd stm lines in the test set (make_corpus(odd_test=True))


def make_corpus(root: Path, release: int = 2, long_train: bool = True, odd_test: bool = False) -> Path:
    """A TED-LIUM tree under ``root`` (release 2 or 3 legacy layout); returns the sets root.
    Talks mapped to None get the odd stm lines (ODD_STM, with their own talk name)."""
    sets_root = root / ("TEDLIUM_release2" if release == 2 else "TEDLIUM_release-3/legacy")
    talks = {
        "train": {ODD_TALK: None, "LongTalk_2010": 260.0} if long_train else {ODD_TALK: None},
        "dev": {"DevTalk_2011": 24.0},
        "test": {"TestTalk_2012": 24.0, **({ODD_TEST_TALK: None} if odd_test else {})},
    }
    seed = 0
    for s, tk in talks.items():
        for talk, seconds in tk.items():
            seed += 1
            if seconds is None:
                write_sph(sets_root / s / "sph" / f"{talk}.sph", ODD_SECONDS, seed)
                # CRLF line ends in this file, as some copies have
                (sets_root / s / "stm").mkdir(parents=True, exist_ok=True)
                stm = "\r\n".join(line.replace(ODD_TALK, talk) for line in ODD_STM)
                (sets_root / s / "stm" / f"{talk}.stm").write_bytes(stm.encode())
                continue
            write_sph(sets_root / s / "sph" / f"{talk}.sph", seconds, seed)
            lines = [f";; {talk}", f"{talk} 1 {talk} 0.00 0.80 <o,f0,female> ignore_time_segment_in_scoring"]
            t, i = 1.0, 0
            while t + 4.0 <= seconds:
                d = 3.0 + (i % 3) * 0.4  # 3.0 .. 3.8 s, gaps of 0.2 .. 1.0 s
                lines.append(f"{talk} 1 {talk} {t:.2f} {t + d:.2f} <o,f0,female> {sentence(seed * 50 + i)}")
                t += 4.0
                i += 1
            (sets_root / s / "stm").mkdir(parents=True, exist_ok=True)
            (sets_root / s / "stm" / f"{talk}.stm").write_text("\n".join(lines) + "\n")
    return sets_root


def recipe_copy(tmp_path: Path) -> Path:
    return recipe_runs.recipe_copy(RECIPE, tmp_path / "recipe")


# --------------------------------------------------------------------------------------- SPHERE
def test_sphere_fixture_is_readable(tmp_path):
    import soundfile as sf

    p = write_sph(tmp_path / "t.sph", 1.25, seed=3)
    info = sf.info(str(p))
    assert (info.samplerate, info.channels, info.frames) == (FS, 1, 20000)
    dur, hdr = tedlium.sphere_duration(p)
    assert dur == pytest.approx(1.25) and hdr["sample_coding"] == "pcm"
    if shutil.which("sox"):
        out = subprocess.run(["sox", "--i", "-s", str(p)], capture_output=True, text=True, check=True)
        assert int(out.stdout.strip()) == 20000
        wav = subprocess.run(f"sox -t sph {p} -t wav -r 16000 -c 1 -b 16 - | sox -t wav - -n stat",
                             shell=True, capture_output=True, text=True)
        assert wav.returncode == 0, wav.stderr
    (tmp_path / "bad.sph").write_bytes(b"RIFF0000WAVEfmt ")
    with pytest.raises(UserError, match="not a NIST SPHERE"):
        tedlium.read_sphere_header(tmp_path / "bad.sph")


# --------------------------------------------------------------------------------------- stm parsing
def test_normalize_transcript():
    n = tedlium.normalize_transcript
    assert n("so {NOISE} it 's the(2) <unk> thing".split()) == ["so", "[NOISE]", "it's", "the", "<unk>", "thing"]
    assert n("We Have <sil> MANY words (AlGore_2009-3)".split()) == ["we", "have", "many", "words"]
    assert n("you 're right they 've".split()) == ["you're", "right", "they've"]
    assert n(["<sil>"]) == []
    assert tedlium.is_label("<o,f0,male>") and tedlium.is_label("<F0_M>")
    assert not tedlium.is_label("<unk>") and not tedlium.is_label("word")


def test_odd_stm_lines(tmp_path):
    sets_root = make_corpus(tmp_path, long_train=False)
    stats = tedlium.StmStats()
    lines = tedlium.parse_stm(sets_root / "train" / "stm" / f"{ODD_TALK}.stm", stats)
    got = [((ln.start, ln.end), " ".join(ln.words)) for ln in lines]
    assert got == [
        ((2.0, 5.3), "so [NOISE] it's the <unk> thing"),
        ((8.0, 11.25), "we have many words [BREATH]"),
        ((11.0, 14.0), "overlapping segment one"),
        ((14.1, 17.0), "<unk> no label on this line"),  # no label field: <unk> is a word
        ((14.1, 17.0), "a duplicate of the line before"),
        ((19.5, 21.4), "past the end of the audio"),
    ]
    assert len(lines) == 6  # the duplicate is removed later, by prepare()
    assert (stats.comments, stats.ignored, stats.empty, stats.bad_times) == (2, 2, 2, 1)


def test_malformed_stm_errors_name_the_file(tmp_path):
    stm = tmp_path / "T1.stm"
    stm.write_text("T1 1 T1 1.0\n")
    with pytest.raises(UserError, match=r"T1\.stm:1.*malformed"):
        tedlium.parse_stm(stm)
    stm.write_text(";; ok\nT1 1 T1 abc 2.0 <o,f0,male> hello\n")
    with pytest.raises(UserError, match=r"T1\.stm:2.*not numbers"):
        tedlium.parse_stm(stm)
    stm.write_text("Other 1 Other 1.0 2.0 <o,f0,male> hello\n")
    with pytest.raises(UserError, match=r"T1\.stm:1.*does not match the file name"):
        tedlium.parse_stm(stm)


def test_unmatched_sph_or_stm_is_an_error(tmp_path):
    sets_root = make_corpus(tmp_path, long_train=False)
    dev = sets_root / "dev"
    write_sph(dev / "sph" / "Orphan_2000.sph", 2.0)
    with pytest.raises(UserError, match=r"Orphan_2000\.sph.*audio but no transcript"):
        tedlium.prepare(dev, tmp_path / "data" / "dev")
    (dev / "sph" / "Orphan_2000.sph").unlink()
    (dev / "stm" / "Lonely_2001.stm").write_text("Lonely_2001 1 Lonely_2001 0.0 1.0 <o,f0,male> hi\n")
    with pytest.raises(UserError, match=r"Lonely_2001\.stm.*transcript but no audio"):
        tedlium.prepare(dev, tmp_path / "data" / "dev")
    assert not (tmp_path / "data" / "dev").exists()


# --------------------------------------------------------------------------------------- data dirs
def test_prepare_train_dir(tmp_path):
    sets_root = make_corpus(tmp_path)
    dst = tmp_path / "data" / "train"
    st = tedlium.prepare(sets_root / "train", dst, pad_start=0.15, pad_end=0.1, wav_cmd="sox")
    assert validate_data_dir(dst) == []
    text, segs, utt2spk, wav = (read_kv(dst / f) for f in ("text", "segments", "utt2spk", "wav.scp"))
    reco2dur = read_kv(dst / "reco2dur")
    # ids: <talk>-<start*100:07d>-<end*100:07d>, sorted (C order), text normalised
    a = f"{ODD_TALK}-0000200-0000530"
    assert text[a] == "so [NOISE] it's the <unk> thing"
    assert text[f"{ODD_TALK}-0000800-0001125"] == "we have many words [BREATH]"
    assert text[f"{ODD_TALK}-0001410-0001700"] == "<unk> no label on this line"  # duplicate dropped
    assert list(text) == sorted(text, key=lambda k: k.encode())
    assert not any("ignore_time_segment_in_scoring" in v for v in text.values())
    assert not any(k.startswith(f"{ODD_TALK}-0000000") or k.startswith(f"{ODD_TALK}-0000150") for k in text)
    assert st["ignored"] == 2 + 1 and st["duplicates"] == 1 and st["clipped"] == 1
    # wav.scp: one sox pipe per talk
    assert wav[ODD_TALK].startswith("sox -t sph /")
    assert wav[ODD_TALK].endswith(f"{ODD_TALK}.sph -t wav -r 16000 -c 1 -b 16 - |")
    assert float(reco2dur[ODD_TALK]) == pytest.approx(ODD_SECONDS)
    # padding: 0.15 before / 0.1 after, clipped to the recording, never into a neighbour
    seg = {u: (v.split()[0], float(v.split()[1]), float(v.split()[2])) for u, v in segs.items()}
    assert seg[a] == (ODD_TALK, 1.85, 5.4)
    # 8.00-11.25 and 11.00-14.00 overlapped in the stm: no padding on the overlapping side
    assert seg[f"{ODD_TALK}-0000800-0001125"][1:] == (7.85, 11.25)
    assert seg[f"{ODD_TALK}-0001100-0001400"][1:] == (11.0, 14.05)
    # 14.00 -> 14.10: a 0.1 s gap, padding would overlap: both meet in the middle
    assert seg[f"{ODD_TALK}-0001410-0001700"][1] == pytest.approx(14.05)
    assert seg[f"{ODD_TALK}-0001950-0002140"][1:] == (19.35, ODD_SECONDS)  # clipped to the audio
    lt = {u: s for u, s in seg.items() if s[0] == "LongTalk_2010"}
    first = min(lt.values(), key=lambda s: s[1])
    assert first[1] == pytest.approx(0.85)
    by_start = sorted(lt.values(), key=lambda s: s[1])
    assert all(p[2] <= q[1] + 1e-9 for p, q in zip(by_start, by_start[1:]))
    # pseudo-speakers: at most 180 s of (padded) speech each, named <talk>-<k>
    spk_dur = {}
    for u, s in utt2spk.items():
        spk_dur[s] = spk_dur.get(s, 0.0) + seg[u][2] - seg[u][1]
        assert u.startswith(s.rsplit("-", 1)[0] + "-")
    assert set(spk_dur) == {f"{ODD_TALK}-1", "LongTalk_2010-1", "LongTalk_2010-2"}
    assert max(spk_dur.values()) <= 180.0 and spk_dur["LongTalk_2010-1"] > 170.0
    # utterance order == speaker order (Kaldi's rule)
    spks = [utt2spk[u] for u in utt2spk]
    assert spks == sorted(spks, key=lambda k: k.encode())


def test_prepare_dev_is_unpadded_and_cli(tmp_path):
    from espnet_lw.bin import prep_tedlium

    sets_root = make_corpus(tmp_path, long_train=False)
    dst = tmp_path / "data" / "dev"
    prep_tedlium.main([str(sets_root / "dev"), str(dst), "--wav_cmd", "path", "--log_level", "WARNING"])
    segs = read_kv(dst / "segments")
    u = "DevTalk_2011-0000100-0000400"
    assert segs[u] == "DevTalk_2011 1.00 4.00"
    assert read_kv(dst / "wav.scp")["DevTalk_2011"].endswith("/dev/sph/DevTalk_2011.sph")
    with pytest.raises(UserError, match="already exists"):
        prep_tedlium.main([str(sets_root / "dev"), str(dst)])


# --------------------------------------------------------------------------------------- the recipe
def test_local_data_sh_release3_and_errors(tmp_path):
    d = recipe_copy(tmp_path)
    db = tmp_path / "db"
    make_corpus(db, release=3, long_train=False)
    r = run(["local/data.sh", "--release", "3", "--nj", "2"], d, {"TEDLIUM": str(db)})
    assert r.returncode == 0, r.stdout + r.stderr
    for s in ("train", "dev", "test"):
        assert validate_data_dir(d / "data" / s) == []
        assert "TEDLIUM_release-3/legacy" in (d / "data" / s / "wav.scp").read_text()
    assert "not downloaded" in r.stdout
    # unknown option / bad release
    r = run(["local/data.sh", "--bogus", "1"], d, {"TEDLIUM": str(db)})
    assert r.returncode != 0 and "unknown option: --bogus" in r.stderr
    r = run(["local/data.sh", "--release", "4"], d, {"TEDLIUM": str(db)})
    assert r.returncode != 0 and "--release must be 2 or 3" in r.stderr
    assert "--release 2|3" in run(["local/data.sh", "--help"], d).stdout
    # offline: nothing there, download impossible -> clear message
    r = run(["local/data.sh"], d, {"TEDLIUM": str(tmp_path / "empty"), "TEDLIUM_URL": "http://127.0.0.1:9",
                                   "no_proxy": "*"})
    assert r.returncode != 0
    assert "download failed; put TEDLIUM_release2 under $TEDLIUM (db.sh) and re-run" in r.stderr


# --------------------------------------------------------------------------------------- run.sh 1-13
NBPE = 60


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> recipe_runs.FullRun:
    """``./run.sh`` stages 1-13 on the fixture tree (the odd stm lines in train and in test), as
    shipped but for a tiny model and vocabulary."""
    tmp = tmp_path_factory.mktemp("tedlium_full")
    make_corpus(tmp / "db", release=2, long_train=True, odd_test=True)
    return recipe_runs.tiny_full_run(RECIPE, tmp, NBPE, {"TEDLIUM": str(tmp / "db")})


def test_run_sh_stages_1_to_5(full_run):
    d = full_run.dir
    raw = d / "dump" / "raw"
    # speed perturbation: three copies of train, ids prefixed sp0.9- / sp1.1-
    train = read_kv(raw / "train_sp" / "text")
    base = read_kv(d / "data" / "train" / "text")
    assert len(train) == 3 * len(base)
    assert f"sp0.9-{ODD_TALK}-0000200-0000530" in train and f"{ODD_TALK}-0000200-0000530" in train
    for s in ("train_sp", "dev", "test"):
        wav = read_kv(raw / s / "wav.scp")
        n = read_kv(raw / s / "utt2num_samples")
        assert set(wav) == set(n) and wav
        first = next(iter(wav.values()))
        assert (d / first).is_file() or Path(first).is_file()
    # segment lengths survive stage 3: 2.00-5.30 padded to 1.85-5.40 = 3.55 s
    n = read_kv(raw / "train_sp" / "utt2num_samples")
    assert int(n[f"{ODD_TALK}-0000200-0000530"]) == pytest.approx(3.55 * FS, abs=2)
    assert int(n[f"sp1.1-{ODD_TALK}-0000200-0000530"]) == pytest.approx(3.55 * FS / 1.1, abs=40)
    tokens = (d / "data" / "token_list" / f"bpe_unigram{NBPE}" / "tokens.txt").read_text().split("\n")
    tokens = [t for t in tokens if t]
    assert tokens[0] == "<blank>" and tokens[1] == "<unk>" and tokens[-1] == "<sos/eos>"
    assert len(tokens) == NBPE
    assert (d / "data" / "token_list" / f"bpe_unigram{NBPE}" / "bpe.model").is_file()


def test_run_sh_stages_1_to_13(full_run):
    import yaml

    test_sets = ["dev", "test"]  # run.sh's
    recipe_runs.check_all_stages(full_run, recipe_runs.expected_markers(
        "train_sp", "dev", test_sets, f"data/token_list/bpe_unigram{NBPE}", f"bpe{NBPE}", recipe_runs.TINY_ASR_TAG))
    exp = full_run.exp(f"{recipe_runs.TINY_ASR_TAG}_raw_bpe{NBPE}")
    conf = yaml.safe_load((exp / "config.yaml").read_text())
    assert conf["train_data_path_and_name_and_type"][0][0] == "dump/raw/train_sp/wav.scp"
    assert conf["encoder_conf"]["num_blocks"] == 2 and len(conf["token_list"]) == NBPE
    scores = recipe_runs.check_decoded_and_scored(full_run, exp, test_sets)
    assert scores["dev"].n_sent == 5  # DevTalk_2011: 24 s, one 3-3.8 s segment every 4 s from 1 s
    assert scores["test"].n_sent == 5 + 5  # TestTalk_2012 + the 5 kept segments of the odd talk


def test_stm_marks_reach_scoring(full_run):
    """What the stm says about scoring holds in stage 13's sclite input: ignore_time_segment_in_scoring
    and untranscribed segments are not scored at all; <unk> and [NOISE]-style tags are reference
    words, each counted once in the WER denominator (ESPnet's TED-LIUM convention: no
    non-linguistic symbol list)."""
    d = full_run.dir
    out = full_run.exp(f"{recipe_runs.TINY_ASR_TAG}_raw_bpe{NBPE}") / recipe_runs.DECODE_TAG / "test"
    # no segment of the test set lies in an ignored (or empty) stretch of the stm
    segs = [v.split() for v in read_kv(d / "data" / "test" / "segments").values()]
    starts = sorted((talk, float(start)) for talk, start, _end in segs)
    assert starts == [(ODD_TEST_TALK, t) for t in (2.0, 8.0, 11.0, 14.1, 19.5)] + \
        [("TestTalk_2012", t) for t in (1.0, 5.0, 9.0, 13.0, 17.0)]
    ref = recipe_runs.read_text(d / "dump" / "raw" / "test" / "text")
    assert ref[f"{ODD_TEST_TALK}-0000200-0000530"] == "so [NOISE] it's the <unk> thing".split()
    assert ref[f"{ODD_TEST_TALK}-0001410-0001700"] == "<unk> no label on this line".split()
    # sclite's input: one line per scored utterance, the tags as words, nothing of the ignored lines
    ref_trn = (out / "score_wer" / "ref.trn").read_text()
    hyp_trn = (out / "score_wer" / "hyp.trn").read_text()
    assert len(ref_trn.splitlines()) == len(hyp_trn.splitlines()) == len(ref) == 10
    words = ref_trn.split()
    assert words.count("<unk>") == 2 and words.count("[NOISE]") == 1 and words.count("[BREATH]") == 1
    assert "ignore_time_segment_in_scoring" not in ref_trn + hyp_trn and "<sil>" not in ref_trn
    summary = recipe_runs.read_sclite_summary(out / "score_wer" / "result.txt")
    assert summary.n_words == sum(len(w) for w in ref.values())
