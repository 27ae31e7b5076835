"""Tests for stage 13: sclite scoring (espnet_lw.scoring, bin/score_sclite) and RESULTS.md
(bin/make_results).  sclite is run for real on tiny texts with hand-counted answers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from espnet_lw import results, scoring
from espnet_lw.bin import make_results, score_sclite
from espnet_lw.scoring import (
    SPACE_SYMBOL,
    build_trn_ids,
    make_trn_id,
    parse_result,
    score,
    tokenize,
)
from espnet_lw.utils.cli import UserError
from espnet_lw.utils.env import human_duration

REPO = Path(__file__).resolve().parents[1]


def _sclite_available() -> bool:
    try:
        scoring.find_sclite()
    except UserError:
        return False
    return True


needs_sclite = pytest.mark.skipif(
    not _sclite_available(), reason="sclite not found (apt-get install sctk, or set SCLITE)"
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ten reference words; the hypothesis has 1 substitution (ONE->WON), 1 deletion (FOUR)
# and 1 insertion (EXTRA) -> WER = 3/10 = 30.0
REF_10 = "u1 ONE TWO THREE FOUR FIVE\nu2 SIX SEVEN EIGHT NINE TEN\n"
HYP_3ERR = "u1 WON TWO THREE FIVE\nu2 SIX SEVEN EIGHT NINE TEN EXTRA\n"


# ---------------------------------------------------------------------------
# pure functions
# ---------------------------------------------------------------------------
def test_tokenize_word_and_char():
    assert tokenize("  HELLO   WORLD ", "wer") == ["HELLO", "WORLD"]
    assert tokenize("AB  C", "cer") == ["A", "B", SPACE_SYMBOL, "C"]
    assert tokenize("", "cer") == []
    assert tokenize("<noise> HI <noise>", "cer", nlsyms=["<noise>"]) == ["H", "I"]
    with pytest.raises(ValueError):
        tokenize("A", "ter")


def test_trn_id_speaker_before_first_dash():
    # sclite -i rm: speaker = text before the first '-', so dashes in spk must go
    assert make_trn_id("spk-a-utt1", "spk-a") == "spk_a-spk-a-utt1"
    assert make_trn_id("u(1)", None) == "u_1_-u_1_"
    with pytest.raises(UserError, match="utt2spk"):
        build_trn_ids({"u1": "A", "u2": "B"}, {"u1": "s"}, "data/utt2spk")


SCLITE_SUM = """\
       | SPKR   | # Snt # Wrd | Corr    Sub    Del    Ins    Err  S.Err |
       |--------+-------------+-----------------------------------------|
       | spk1   |    2     10 | 80.0   10.0   10.0   10.0   30.0  100.0 |
       |================================================================|
       | Sum/Avg|    2     10 | 80.0   10.0   10.0   10.0   30.0  100.0 |
       |================================================================|
       |  Mean  |  2.0   10.0 | 80.0   10.0   10.0   10.0   30.0  100.0 |
        | SPKR | # Snt # Wrd | Corr    Sub    Del    Ins    Err  S.Err |
        | Sum  |    2     10 |    8      1      1      1      3      2 |
"""


def test_parse_result_text(tmp_path):
    s = parse_result(write(tmp_path / "result.txt", SCLITE_SUM))
    assert (s.snt, s.wrd) == (2, 10)
    assert (s.corr, s.sub, s.del_, s.ins, s.err, s.s_err) == (80.0, 10.0, 10.0, 10.0, 30.0, 100.0)
    assert (s.n_corr, s.n_sub, s.n_del, s.n_ins, s.n_err, s.n_s_err) == (8, 1, 1, 1, 3, 2)
    assert s.row() == ["2", "10", "80.0", "10.0", "10.0", "10.0", "30.0", "100.0"]
    with pytest.raises(UserError, match="Sum/Avg"):
        parse_result(write(tmp_path / "bad.txt", "nothing here\n"))


def test_find_sclite_missing(monkeypatch, tmp_path):
    monkeypatch.delenv("SCLITE", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(scoring, "DEBIAN_SCLITE", str(tmp_path / "no_sclite"))
    with pytest.raises(UserError, match="apt-get install sctk"):
        scoring.find_sclite()
    monkeypatch.setenv("SCLITE", str(tmp_path / "nothing"))
    with pytest.raises(UserError, match="SCLITE"):
        scoring.find_sclite()


# ---------------------------------------------------------------------------
# real sclite runs
# ---------------------------------------------------------------------------
@needs_sclite
def test_wer_one_sub_one_del_one_ins(tmp_path):
    ref = write(tmp_path / "ref" / "text", REF_10)
    hyp = write(tmp_path / "hyp" / "text", HYP_3ERR)
    res = score(ref, hyp, tmp_path / "out", score_types=["wer"])
    w = res["wer"]
    assert (w.snt, w.wrd) == (2, 10)
    assert (w.corr, w.sub, w.del_, w.ins, w.err, w.s_err) == (80.0, 10.0, 10.0, 10.0, 30.0, 100.0)
    assert (w.n_sub, w.n_del, w.n_ins, w.n_err) == (1, 1, 1, 3)
    d = tmp_path / "out" / "score_wer"
    assert (d / "ref.trn").read_text().splitlines() == [
        "ONE TWO THREE FOUR FIVE (u1-u1)",
        "SIX SEVEN EIGHT NINE TEN (u2-u2)",
    ]
    assert (d / "hyp.trn").read_text().splitlines()[0] == "WON TWO THREE FIVE (u1-u1)"
    assert (d / "result.dtl").is_file()
    assert parse_result(d / "result.txt") == w


@needs_sclite
def test_cer_counts_characters_and_spaces(tmp_path):
    ref = write(tmp_path / "text", "u1 AB CD\n")  # A B <space> C D: 5 tokens
    hyp = write(tmp_path / "hyp", "u1 AB CX\n")
    c = score(ref, hyp, tmp_path / "out", score_types=["cer"])["cer"]
    assert (c.wrd, c.n_sub, c.err) == (5, 1, 20.0)
    assert (tmp_path / "out/score_cer/ref.trn").read_text() == "A B <space> C D (u1-u1)\n"


@needs_sclite
def test_missing_hyp_scored_as_deletions_and_order_free(tmp_path):
    ref = write(tmp_path / "text", "u1 A B C D\nu2 E F G H\nu3 I J\n")
    hyp = write(tmp_path / "hyp", "u2 E F G H\nu1 A B C D\n")  # other order, u3 missing
    w = score(ref, hyp, tmp_path / "out", score_types=["wer"], allow_missing=True)["wer"]
    assert (w.snt, w.wrd, w.n_del, w.n_err) == (3, 10, 2, 2)
    assert w.err == 20.0
    hyp_trn = (tmp_path / "out/score_wer/hyp.trn").read_text().splitlines()
    assert hyp_trn == ["A B C D (u1-u1)", "E F G H (u2-u2)", " (u3-u3)"]


@needs_sclite
def test_empty_hypothesis_line(tmp_path):
    ref = write(tmp_path / "text", "u1 A B\nu2 C D\n")
    hyp = write(tmp_path / "hyp", "u1\nu2 C D\n")
    w = score(ref, hyp, tmp_path / "out", score_types=["wer"])["wer"]
    assert (w.n_del, w.err) == (2, 50.0)


@needs_sclite
def test_unknown_hyp_utterance_is_an_error(tmp_path):
    ref = write(tmp_path / "text", "u1 A B\n")
    hyp = write(tmp_path / "hyp" / "text", "u1 A B\nzz9 C\n")
    with pytest.raises(UserError) as e:
        score(ref, hyp, tmp_path / "out")
    assert e.value.path == str(hyp) and "zz9" in e.value.what
    # through the CLI: one clear line naming the file, exit 1, no traceback
    proc = subprocess.run(
        [sys.executable, "-m", "espnet_lw.bin.score_sclite", "--ref", str(ref), "--hyp", str(hyp),
         "--out", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 1
    assert f"ERROR: {hyp}:" in proc.stderr and "Traceback" not in proc.stderr


@needs_sclite
def test_per_speaker_report_uses_utt2spk(tmp_path):
    data = tmp_path / "dump/raw/test"
    write(data / "text", "spk-a-1 A B\nspk-a-2 C D\nspk-b-1 E F\n")
    write(data / "utt2spk", "spk-a-1 spk-a\nspk-a-2 spk-a\nspk-b-1 spk-b\n")
    hyp = write(tmp_path / "exp/m/decode_x/test/text", "spk-a-1 A B\nspk-a-2 C D\nspk-b-1 E\n")
    out = tmp_path / "exp/m/decode_x/test"
    # --utt2spk is picked up from next to --ref
    score_sclite.main(["--ref", str(data / "text"), "--hyp", str(hyp), "--out", str(out)])
    result = (out / "score_wer/result.txt").read_text()
    spk_rows = {}  # first table: percentages by speaker
    for line in result.splitlines():
        if line.count("|") > 3:
            spk_rows.setdefault(line.split("|")[1].strip(), line)
    assert "spk_a" in spk_rows and "spk_b" in spk_rows and "spk" not in spk_rows
    assert "100.0" in spk_rows["spk_a"].split("|")[3]  # all of spk_a correct
    assert (out / "score_cer/result.txt").is_file()


@needs_sclite
def test_score_sclite_cli_summary(tmp_path, capsys):
    ref = write(tmp_path / "text", REF_10)
    hyp = write(tmp_path / "exp/m/decode_x/test/text", HYP_3ERR)
    score_sclite.main(["--ref", str(ref), "--hyp", str(hyp), "--out", str(tmp_path / "exp/m/decode_x/test")])
    line = capsys.readouterr().out.strip()
    assert line.startswith("decode_x/test: WER 30.0 (S 10.0 D 10.0 I 10.0, 10 words, 2 utts) | CER ")


# ---------------------------------------------------------------------------
# RESULTS.md
# ---------------------------------------------------------------------------
def test_help_works():
    for mod in (score_sclite, make_results):
        with pytest.raises(SystemExit) as e:
            mod.get_parser().parse_args(["--help"])
        assert e.value.code == 0


def test_read_stage_times(tmp_path):
    p = write(tmp_path / "t.tsv", "stage\tdescription\tseconds\tstatus\n1\tdata\t1.5\tok\n11\ttrain\t65\tok\n")
    st = results.read_stage_times(p)
    assert [(s.stage, s.seconds) for s in st] == [("1", 1.5), ("11", 65.0)]
    assert human_duration(65) == "1m05s"
    with pytest.raises(UserError, match="not a number"):
        results.read_stage_times(write(tmp_path / "bad.tsv", "1\tdata\tfast\tok\n"))


@needs_sclite
def test_make_results(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ref = write(tmp_path / "dump/raw/test/text", REF_10)
    for model, hyp_text in (("asr_big", REF_10), ("asr_small", HYP_3ERR)):
        hyp = write(tmp_path / f"exp/{model}/decode_asr/test/text", hyp_text)
        score(ref, hyp, tmp_path / f"exp/{model}/decode_asr/test")
    write(tmp_path / "exp/asr_small/params.txt", "1234567\n")
    write(tmp_path / "exp/asr_small/run_command.txt", "./run.sh --student_config conf/student_r50.yaml\n")
    write(tmp_path / "exp/stage_times.tsv", "1\tdata prep\t12.34\tok\n13\tscoring\t2.0\tok\n")
    argv = ["--exp_dir", "exp", "--out", "RESULTS.md", "--command", "./run.sh --stage 13",
            "--date", "2025-01-01", "--title", "tiny test"]
    make_results.main(argv)
    text = (tmp_path / "RESULTS.md").read_text()
    assert "## exp/asr_small" in text and "## exp/asr_big" in text
    assert text.index("## exp/asr_big") < text.index("## exp/asr_small")
    assert "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|" in text
    assert "|decode_asr/test|2|10|80.0|10.0|10.0|10.0|30.0|100.0|" in text
    assert "|decode_asr/test|2|10|100.0|0.0|0.0|0.0|0.0|0.0|" in text
    assert text.count("### WER") == 2 and text.count("### CER") == 2
    assert "./run.sh --stage 13" in text
    assert "|1|data prep|12.3|12.3s|ok|" in text and "|13|scoring|2.0|2.0s|ok|" in text
    assert "1.23 M (1,234,567)" in text
    small = text[text.index("## exp/asr_small"):]
    assert small.index("- trained by: `./run.sh --student_config conf/student_r50.yaml`") < small.index("### WER")
    assert "trained by" not in text[text.index("## exp/asr_big"):text.index("## exp/asr_small")]
    for key in ("- date: `2025-01-01`", "python version", "pytorch version", "espnet version",
                "espnet_lw version", "Git hash", "CPU:", "GPU:"):
        assert key in text
    make_results.main(argv)  # deterministic
    assert (tmp_path / "RESULTS.md").read_text() == text


def test_make_results_without_results(tmp_path):
    (tmp_path / "exp").mkdir()
    with pytest.raises(UserError, match="no scoring results"):
        make_results.main(["--exp_dir", str(tmp_path / "exp"), "--out", str(tmp_path / "R.md")])


@pytest.mark.skipif(not os.access("/usr/bin/sctk", os.X_OK), reason="Debian sctk wrapper not installed")
def test_sctk_wrapper_fallback(monkeypatch, tmp_path):
    monkeypatch.delenv("SCLITE", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr(scoring, "DEBIAN_SCLITE", str(tmp_path / "no_sclite"))
    cmd = scoring.find_sclite()
    assert cmd == ["/usr/bin/sctk", "sclite"]
    ref = write(tmp_path / "text", REF_10)
    hyp = write(tmp_path / "hyp", HYP_3ERR)
    assert score(ref, hyp, tmp_path / "out", score_types=["wer"])["wer"].err == 30.0


def test_stage_times_keep_the_run_that_did_the_work(tmp_path):
    from espnet_lw.results import read_stage_times

    tsv = tmp_path / "stage_times.tsv"
    tsv.write_text(
        "3\tformat\t7\tdone\n11\ttraining exp/a\t3600\tdone\n3\tformat\t0\tskipped\n"
        "11\ttraining exp/a\t0\tskipped\n12\tdecoding x\t50\tdone\n12\tdecoding x\t40\tdone\n"
    )
    rows = [(t.stage, t.seconds, t.status) for t in read_stage_times(tsv)]
    assert rows == [("3", 7.0, "done"), ("11", 3600.0, "done"), ("12", 40.0, "done")]


def test_make_results_keeps_the_benchmark_section(tmp_path):
    from espnet_lw.results import keep_marked_sections

    out = tmp_path / "RESULTS.md"
    out.write_text("# old\n\n<!-- benchmark:begin -->\n|system|WER|\n<!-- benchmark:end -->\n")
    new = keep_marked_sections(out, "# RESULTS\nnew tables\n")
    assert new.startswith("# RESULTS\nnew tables")
    assert "<!-- benchmark:begin -->\n|system|WER|\n<!-- benchmark:end -->" in new
    assert "# old" not in new
