"""Tests of the egs2/librispeech/lw1 recipe (local/data.sh: download / verify / extract / prepare,
run.sh stages 1-13 with a tiny model) and of bin/combine_data, on a small LibriSpeech-layout fixture tree
(``<part>/<speaker>/<chapter>/*.flac`` + ``*.trans.txt``, SPEAKERS.TXT) in tmp_path."""

from __future__ import annotations

import functools
import hashlib
import http.server
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import recipe_runs
from recipe_runs import run

from espnet_lw.bin import combine_data
from espnet_lw.data.kaldi_dir import read_kv, validate_data_dir, write_kv
from espnet_lw.utils.cli import UserError

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2" / "librispeech" / "lw1"
FS = 16000

WORDS = ("ALICE WAS BEGINNING TO GET VERY TIRED OF SITTING BY HER SISTER ON THE BANK AND HAVING NOTHING "
         "ONCE OR TWICE SHE HAD PEEPED INTO BOOK READING BUT IT NO PICTURES CONVERSATIONS WHAT IS USE "
         "THOUGHT WITHOUT SO CONSIDERING IN OWN MIND AS WELL COULD FOR HOT DAY MADE FEEL SLEEPY STUPID "
         "WHETHER PLEASURE OF MAKING DAISY CHAIN WOULD BE WORTH TROUBLE GETTING UP PICKING DAISIES WHEN "
         "SUDDENLY WHITE RABBIT WITH PINK EYES RAN CLOSE THERE NOTHING SO VERY REMARKABLE IN THAT NOR "
         "DID THINK IT SO MUCH OUT WAY HEAR SAY ITSELF OH DEAR SHALL BE LATE DON'T I'M").split()

# part -> {(speaker, chapter): number of utterances}
LAYOUT = {
    "dev-clean": {("84", "121123"): 3, ("174", "50561"): 2},
    "dev-other": {("116", "288045"): 3, ("1255", "90407"): 2},
    "test-clean": {("61", "70968"): 3},
    "test-other": {("367", "130732"): 3},
    "train-clean-100": {("19", "198"): 6, ("19", "227"): 5, ("26", "495"): 6, ("103", "1240"): 7},
    "train-clean-360": {("100", "121669"): 3},
}
SPEAKERS_TXT = """\
; fake LibriSpeech speaker table
;ID  |SEX| SUBSET           |MINUTES| NAME
19   | F | train-clean-100  | 25.19 | Kara Shallenberg
26   | M | train-clean-100  | 25.08 | Denny Sayers
61   | M | test-clean       |  8.08 | Paul-Gregory
84   | F | dev-clean        |  8.02 | Christie Nowak
100  | F | train-clean-360  | 25.03 | Judy Bieber
103  | F | train-clean-100  | 25.23 | Karen Savage
116  | M | dev-other        |  8.13 | Steven Collins
174  | M | dev-clean        |  8.04 | Peter Eastman
367  | F | test-other       |  8.04 | Geoffrey Edwards
1255 | M | dev-other        |  8.06 | Michael Packard
"""


def make_part(root: Path, part: str, seed: int = 0) -> Path:
    """``root/LibriSpeech/<part>`` with short synthetic FLAC files and their transcripts."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    ls = root / "LibriSpeech"
    ls.mkdir(parents=True, exist_ok=True)
    if not (ls / "SPEAKERS.TXT").exists():
        (ls / "SPEAKERS.TXT").write_text(SPEAKERS_TXT)
    for (spk, chap), n in LAYOUT[part].items():
        d = ls / part / spk / chap
        d.mkdir(parents=True)
        lines = []
        for i in range(n):
            uttid = f"{spk}-{chap}-{i:04d}"
            words = [WORDS[int(k)] for k in rng.integers(0, len(WORDS), size=int(rng.integers(5, 11)))]
            lines.append(f"{uttid} {' '.join(words)}")
            nsamp = int(FS * rng.uniform(0.5, 1.1))
            x = 0.1 * rng.standard_normal(nsamp) + 0.2 * np.sin(2 * np.pi * 220 * np.arange(nsamp) / FS)
            sf.write(str(d / f"{uttid}.flac"), x.astype(np.float32), FS, subtype="PCM_16")
        (d / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    return ls / part


def make_corpus(root: Path, parts=("dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100")) -> Path:
    for k, part in enumerate(parts):
        make_part(root, part, seed=k)
    return root


def recipe_copy(tmp_path: Path) -> Path:
    return recipe_runs.recipe_copy(RECIPE, tmp_path / "recipe")


def n_utts(part: str) -> int:
    return sum(LAYOUT[part].values())


# --------------------------------------------------------------------------------------- combine_data
def _dir(d: Path, utts: dict, spk_of=lambda u: u.split("-")[0], segments=None) -> Path:
    d.mkdir(parents=True)
    write_kv(d / "text", {u: t for u, t in utts.items()})
    write_kv(d / "utt2spk", {u: spk_of(u) for u in utts})
    if segments:
        write_kv(d / "segments", segments)
        write_kv(d / "wav.scp", {v.split()[0]: f"/x/{v.split()[0]}.wav" for v in segments.values()})
    else:
        write_kv(d / "wav.scp", {u: f"/x/{u}.flac" for u in utts})
    spk2utt = {}
    for u in sorted(utts):
        spk2utt.setdefault(spk_of(u), []).append(u)
    write_kv(d / "spk2utt", spk2utt)
    return d


def test_combine_data(tmp_path):
    a = _dir(tmp_path / "a", {"1-1-0001": "HELLO", "1-1-0002": "WORLD"})
    b = _dir(tmp_path / "b", {"2-5-0001": "FOO", "10-1-0003": "BAR"})
    write_kv(b / "utt2gender", {"2-5-0001": "m", "10-1-0003": "f"})  # only in b: left out
    out = tmp_path / "ab"
    st = combine_data.combine(out, [a, b])
    assert st == {"utts": 4, "speakers": 3}
    assert validate_data_dir(out) == []
    assert list(read_kv(out / "text")) == ["1-1-0001", "1-1-0002", "10-1-0003", "2-5-0001"]
    assert not (out / "utt2gender").exists()
    assert read_kv(out / "spk2utt")["1"] == "1-1-0001 1-1-0002"
    # duplicate utterance id -> error naming both dirs; nothing written
    c = _dir(tmp_path / "c", {"1-1-0002": "AGAIN"})
    with pytest.raises(UserError, match="1-1-0002.*both"):
        combine_data.combine(tmp_path / "ac", [a, c])
    assert not (tmp_path / "ac").exists()
    # segments mixed with plain dirs -> error
    s = _dir(tmp_path / "s", {"r1-0001": "SEG"}, spk_of=lambda u: "r1", segments={"r1-0001": "r1 0.0 1.0"})
    with pytest.raises(UserError, match="segments"):
        combine_data.combine(tmp_path / "as", [a, s])
    # existing output needs --overwrite (CLI)
    with pytest.raises(UserError, match="already exists"):
        combine_data.main([str(out), str(a), str(b)])
    combine_data.main([str(out), str(a), str(b), "--overwrite", "--log_level", "WARNING"])


# --------------------------------------------------------------------------------------- local/data.sh
def test_local_data_sh_prepares_all_sets(tmp_path):
    d = recipe_copy(tmp_path)
    db = make_corpus(tmp_path / "db", parts=tuple(LAYOUT))
    r = run(["local/data.sh", "--nj", "2"], d, {"LIBRISPEECH": str(db)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "not downloaded" in r.stdout and "the official dev-clean has 2703" in r.stdout
    data = d / "data"
    for name in ("dev_clean", "dev_other", "test_clean", "test_other", "train_clean_100", "dev"):
        assert validate_data_dir(data / name) == [], name
    assert not (data / "train_clean_360").exists()  # not asked for (--train_subset 100)
    text = read_kv(data / "train_clean_100" / "text")
    assert len(text) == n_utts("train-clean-100")
    assert list(text) == sorted(text, key=lambda k: k.encode())
    utt2spk = read_kv(data / "train_clean_100" / "utt2spk")
    assert utt2spk["19-198-0000"] == "19-198" and utt2spk["103-1240-0006"] == "103-1240"
    wav = read_kv(data / "train_clean_100" / "wav.scp")
    assert wav["19-198-0000"] == str(db / "LibriSpeech" / "train-clean-100" / "19" / "198" / "19-198-0000.flac")
    # dev = dev_clean + dev_other
    dev = read_kv(data / "dev" / "text")
    assert len(dev) == n_utts("dev-clean") + n_utts("dev-other")
    assert set(dev) == set(read_kv(data / "dev_clean" / "text")) | set(read_kv(data / "dev_other" / "text"))
    # a second run reuses the prepared dirs
    r = run(["local/data.sh"], d, {"LIBRISPEECH": str(db)})
    assert r.returncode == 0 and "already complete; skipping" in r.stdout
    # 460 h: train_clean_100 + train_clean_360 combined
    r = run(["local/data.sh", "--train_subset", "460"], d, {"LIBRISPEECH": str(db)})
    assert r.returncode == 0, r.stdout + r.stderr
    t460 = read_kv(data / "train_clean_460" / "text")
    assert len(t460) == n_utts("train-clean-100") + n_utts("train-clean-360")
    assert validate_data_dir(data / "train_clean_460") == []


def test_local_data_sh_errors(tmp_path):
    d = recipe_copy(tmp_path)
    env = {"LIBRISPEECH": str(tmp_path / "nothing"), "LIBRISPEECH_URL": "http://127.0.0.1:9"}
    r = run(["local/data.sh", "--bogus", "1"], d, env)
    assert r.returncode != 0 and "unknown option: --bogus" in r.stderr
    r = run(["local/data.sh", "--train_subset", "200"], d, env)
    assert r.returncode != 0 and "--train_subset must be 100, 460 or 960" in r.stderr
    assert "--train_subset 100|460|960" in run(["local/data.sh", "--help"], d, env).stdout
    r = run(["local/data.sh"], d, env)
    assert r.returncode != 0
    assert "download failed; put LibriSpeech under $LIBRISPEECH (db.sh) and re-run" in r.stderr
    r = run(["./run.sh", "--train_subset", "5"], d, env)
    assert r.returncode != 0 and "--train_subset must be" in r.stderr


@pytest.fixture
def http_root(tmp_path):
    """A local HTTP server (the 'mirror'); yields (directory, base URL)."""
    root = tmp_path / "mirror"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield root, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_download_verify_extract(tmp_path, http_root):
    mirror, url = http_root
    # the mirror holds test-other.tar.gz; the local copy has every other part
    src = make_corpus(tmp_path / "src", parts=("test-other",))
    archive = mirror / "test-other.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "LibriSpeech", arcname="LibriSpeech")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    db = make_corpus(tmp_path / "db", parts=("dev-clean", "dev-other", "test-clean", "train-clean-100"))
    d = recipe_copy(tmp_path)
    env = {"LIBRISPEECH": str(db), "LIBRISPEECH_URL": url}
    # the built-in (official) checksum does not match the fake archive: refused, kept aside
    r = run(["local/data.sh"], d, env)
    assert r.returncode != 0 and "does not match the published fb5a50374b501bb3bac4815ee91d3135" in r.stderr
    assert (db / "test-other.tar.gz.bad").is_file() and not (db / "LibriSpeech" / "test-other").exists()
    (db / "test-other.tar.gz.bad").unlink()
    # with the mirror's checksum file: downloaded, verified, extracted, archive removed
    sums = tmp_path / "md5sum.txt"
    sums.write_text(f"{md5}  test-other.tar.gz\n")
    r = run(["local/data.sh", "--checksums", str(sums)], d, env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "md5 of" in r.stdout and "extracted" in r.stdout
    assert len(list((db / "LibriSpeech" / "test-other").glob("*/*/*.flac"))) == n_utts("test-other")
    assert not (db / "test-other.tar.gz").exists() and not list(db.glob(".extract*"))
    assert validate_data_dir(d / "data" / "test_other") == []


# --------------------------------------------------------------------------------------- run.sh 1-13
TEST_SETS = ["test_clean", "test_other", "dev_clean", "dev_other"]  # run.sh's
NBPE = 50


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> recipe_runs.FullRun:
    """``./run.sh`` stages 1-13 on the fixture tree, as shipped but for a tiny model and vocabulary."""
    tmp = tmp_path_factory.mktemp("librispeech_full")
    db = make_corpus(tmp / "db")
    return recipe_runs.tiny_full_run(RECIPE, tmp, NBPE, {"LIBRISPEECH": str(db)})


def test_run_sh_stages_1_to_5(full_run):
    d = full_run.dir
    raw = d / "dump" / "raw"
    text = read_kv(raw / "train_clean_100_sp" / "text")
    assert len(text) == 3 * n_utts("train-clean-100")
    assert {"sp0.9-19-198-0000", "19-198-0000", "sp1.1-19-198-0000"} <= set(text)
    for s in ("train_clean_100_sp", "dev", "test_clean", "test_other", "dev_clean", "dev_other"):
        wav = read_kv(raw / s / "wav.scp")
        nsamp = read_kv(raw / s / "utt2num_samples")
        assert wav and set(wav) == set(nsamp), s
        p = Path(next(iter(wav.values())))
        assert (p if p.is_absolute() else d / p).is_file() and p.suffix == ".flac"
    assert len(read_kv(raw / "dev" / "wav.scp")) == n_utts("dev-clean") + n_utts("dev-other")
    n = read_kv(raw / "train_clean_100_sp" / "utt2num_samples")
    assert int(n["sp0.9-19-198-0000"]) == pytest.approx(int(n["19-198-0000"]) / 0.9, rel=0.01)
    tok_dir = d / "data" / "token_list" / f"bpe_unigram{NBPE}"
    tokens = (tok_dir / "tokens.txt").read_text().split()
    assert tokens[0] == "<blank>" and tokens[1] == "<unk>" and tokens[-1] == "<sos/eos>"
    assert len(tokens) == NBPE  # ESPnet convention: the token list has nbpe entries
    assert (tok_dir / "bpe.model").is_file()


def test_run_sh_stages_1_to_13(full_run):
    import yaml

    recipe_runs.check_all_stages(full_run, recipe_runs.expected_markers(
        "train_clean_100_sp", "dev", TEST_SETS, f"data/token_list/bpe_unigram{NBPE}", f"bpe{NBPE}",
        recipe_runs.TINY_ASR_TAG))
    exp = full_run.exp(f"{recipe_runs.TINY_ASR_TAG}_raw_bpe{NBPE}")
    conf = yaml.safe_load((exp / "config.yaml").read_text())
    # the recipe's data and tokens, the tiny model
    assert conf["train_data_path_and_name_and_type"][0][0] == "dump/raw/train_clean_100_sp/wav.scp"
    assert conf["valid_data_path_and_name_and_type"][0][0] == "dump/raw/dev/wav.scp"
    assert conf["bpemodel"] == f"data/token_list/bpe_unigram{NBPE}/bpe.model" and len(conf["token_list"]) == NBPE
    assert conf["encoder_conf"]["num_blocks"] == 2 and conf["max_epoch"] == 1
    scores = recipe_runs.check_decoded_and_scored(full_run, exp, TEST_SETS)
    assert scores["test_clean"].n_sent == n_utts("test-clean")
    assert scores["dev_other"].n_sent == n_utts("dev-other")
