"""The field-adaptation measurement (espnet_lw.adapt.measure, bin/adapt_benchmark): its plan of ./run.sh
calls, the minutes configs, and the report from a fake exp tree (adaptations, way-(b) students, logs)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_adapt import _result
from test_benchmark import write_log

from espnet_lw.adapt import measure
from espnet_lw.adapt.report import write_report as write_adapt_report

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2" / "mini_synth" / "lw1"
TAG = measure.DECODE_TAG
STUDENTS = ["asr_student_r67_encrl_seed1", "asr_student_r83_encrl_seed1"]
REF = "asr_reference_mini_raw_char"


def test_adapt_tag_is_the_drivers_default():
    # lw.sh: <model dir name without asr_>[_<config name without adapt / adapt_>]_<set>
    assert measure.adapt_tag("exp/asr_student_r67_encrl_seed1", "conf/adapt.yaml", "field_adapt") == \
        "student_r67_encrl_seed1_field_adapt"
    assert measure.adapt_tag("exp/asr_x", "conf/adapt_noreplay.yaml", "f") == "x_noreplay_f"
    assert measure.adapt_tag("exp/asr_x", "exp/adapt_benchmark/conf/adapt_min2.5.yaml", "f") == "x_min2.5_f"
    driver = (REPO / "egs2/TEMPLATE/lw1/lw.sh").read_text()
    assert 'adapt_tag="${_model_name#asr_}${_suffix:+_${_suffix}}_${adapt_set}"' in driver


def test_minutes_configs_change_only_minutes(tmp_path):
    base = RECIPE / "conf" / "adapt.yaml"
    out = measure.write_minutes_configs(base, [2.5, 5], tmp_path)
    assert [p.name for p in out.values()] == ["adapt_min2.5.yaml", "adapt_min5.yaml"]
    orig = yaml.safe_load(base.read_text())
    derived = yaml.safe_load(out[2.5].read_text())
    assert derived == {**orig, "minutes": 2.5}
    from espnet_lw.adapt.config import AdaptConfig

    assert AdaptConfig.load(out[5]).minutes == 5.0  # the stage's own config check accepts it
    with pytest.raises(Exception, match="positive"):
        measure.write_minutes_configs(base, [0], tmp_path)


def fake_tree(root: Path) -> Path:
    """exp/ with a reference and two students (stage 11 + 13 on field_test and test), every adaptation of
    the default plan finished, and the way-(b) students trained and scored."""
    exp = root / "exp"
    before = {"field_test": 120.0, "test": 70.0}
    for name, ratio in ((REF, None), (STUDENTS[0], 0.667), (STUDENTS[1], 0.833)):
        d = exp / name
        (d / "conf").mkdir(parents=True)
        (d / ".done.stage11").touch()
        if ratio:
            (d / "conf" / "student.json").write_text(json.dumps(
                {"mode": "encrl", "student_config": f"student_r{name[13:15]}.yaml", "seed": 1, "ratio": ratio}))
        for dset, w in before.items():
            _result(d / TAG / dset / "score_wer", w + (ratio or 0) * 10)
    minutes = measure.write_minutes_configs(RECIPE / "conf" / "adapt.yaml", [2.5, 5], exp / "adapt_benchmark/conf")
    runs = [(s, "conf/adapt.yaml", 9.7, 60.0) for s in STUDENTS] + [(REF, "conf/adapt.yaml", 9.7, 55.0)]
    runs += [(STUDENTS[0], "conf/adapt_noreplay.yaml", 9.7, 58.0)]
    runs += [(STUDENTS[0], str(p), m, 50.0 + m) for m, p in minutes.items()]
    for model, config, mins, field_after in runs:
        a = exp / f"adapt_{measure.adapt_tag(model, config, 'field_adapt')}"
        _result(a / TAG / "field_test" / "score_wer", field_after)
        _result(a / TAG / "test" / "score_wer", 72.0 if "noreplay" not in config else 80.0)
        for dset in ("field_test", "test"):
            (a / TAG / dset / "score_cer").mkdir(parents=True)
        (a / "adapt.json").write_text(json.dumps({"data": {"field_seconds": mins * 60, "field_utts": 10,
                                                           "replay_utts": 3}}))
        write_log(a / "train.log", [("40 seconds", "5 seconds")] * 2)
        write_adapt_report(exp / model, a, TAG, ["field_test", "test"], train_seconds=90.0)
    info = exp / f"adapt_{measure.adapt_tag(REF, 'conf/adapt.yaml', 'field_adapt')}/reference/targets/train/info.yaml"
    info.parent.mkdir(parents=True)
    info.write_text("what: [enc]\nthis_run: {wall_seconds: 40.0}\n")
    for s in STUDENTS:
        d = exp / f"{s}_adaptref"
        (d / ".done.stage11").parent.mkdir(parents=True)
        (d / ".done.stage11").touch()
        write_log(d / "encrl" / "train.log", [("1 minute", "10 seconds")])
        write_log(d / "train.log", [("2 minutes", "10 seconds")] * 2)
        for dset, w in (("field_test", 100.0), ("test", 69.0)):
            _result(d / TAG / dset / "score_wer", w)
    return exp


def fake_recipe(tmp_path: Path) -> Path:
    """A recipe dir (run.sh, conf/) holding :func:`fake_tree`'s exp/."""
    recipe = tmp_path / "lw1"
    recipe.mkdir()
    shutil.copy2(RECIPE / "run.sh", recipe / "run.sh")
    shutil.copytree(RECIPE / "conf", recipe / "conf")
    fake_tree(recipe)
    return recipe


def test_plan_runs_way_a_then_sweep_then_way_b(tmp_path):
    exp = fake_tree(tmp_path)
    confs = measure.write_minutes_configs(RECIPE / "conf" / "adapt.yaml", [2.5], exp / "c")
    cmds = measure.plan(str(exp), STUDENTS, STUDENTS[0], REF, "field_adapt", "field_test test", "conf/adapt.yaml",
                        "conf/adapt_noreplay.yaml", confs, ["a", "b"], ["--nbpe", "48"])
    stage16 = [c for c in cmds if c[2] == "16"]
    models = [c[c.index("--adapt_model") + 1].rsplit("/", 1)[1] for c in stage16]
    assert models == [*STUDENTS, STUDENTS[0], STUDENTS[0], REF]
    assert [c[c.index("--adapt_config") + 1] for c in stage16][2:4] == ["conf/adapt_noreplay.yaml", str(confs[2.5])]
    derived = [c for c in cmds if c[2] == "11"]
    assert len(derived) == 2 and cmds[-2:] == derived and all(c[-2:] == ["--nbpe", "48"] for c in cmds)
    c = derived[0]
    assert c[c.index("--ref_exp") + 1] == f"{exp}/adapt_reference_mini_raw_char_field_adapt/reference"
    assert c[c.index("--student_config") + 1] == "conf/student_r67.yaml"
    assert c[c.index("--student_tag") + 1] == "student_r67_encrl_seed1_adaptref"
    assert c[c.index("--student_seed") + 1] == "1" and c[c.index("--student_mode") + 1] == "encrl"
    only_a = measure.plan(str(exp), STUDENTS, None, None, "field_adapt", "field_test", "conf/adapt.yaml", None, {},
                          ["a"], [])
    assert len(only_a) == 2


def test_report_tables_bounds_plot_and_logs(tmp_path):
    exp = fake_tree(tmp_path)
    minutes = {m: exp / "adapt_benchmark/conf" / f"adapt_min{m:g}.yaml" for m in (2.5, 5)}
    m = measure.collect(exp, STUDENTS, STUDENTS[0], REF, "field_adapt", ["field_test", "test"], "conf/adapt.yaml",
                        "conf/adapt_noreplay.yaml", minutes)
    a = m["way_a"][STUDENTS[0]]
    assert a["sets"]["field_test"]["before"] == 126.7 and a["sets"]["field_test"]["after"] == 60.0
    assert a["train_seconds"] == 90.0 and a["field_minutes"] == pytest.approx(9.7)
    assert [r["minutes_asked"] for r in m["sweep"]] == [2.5, 5, None]
    assert m["way_b"][STUDENTS[1]]["train_seconds"] == 60 + 10 + 2 * 130
    prov = {"run": {"commit": "abc", "clean": True, "date": "d", "machine": {"cpu": "x"}}}
    section = measure.write_report(tmp_path, exp, m, "local/adapt_benchmark.sh", prov)
    text = (tmp_path / "RESULTS.md").read_text()
    assert text.startswith(measure.BEGIN_MARK) and section.rstrip().endswith(measure.END_MARK)
    assert "local/adapt_benchmark.sh" in section and "`abc` (clean tree)" in section
    # way (a): 126.7 -> 60.0 is -52.6 %; test 76.67 -> 72 is -6.1 %
    assert f"|{STUDENTS[0]}|0.667|9.7|90|126.7|60.0|-52.6|76.7|72.0|-6.1|" in section
    # way (b): the derived students' WER beside way (a)'s, and the time of both ways
    assert "|asr_student_r67_encrl_seed1_adaptref|330|100.0|60.0|69.0|72.0|" in section
    assert "way (a) 180 s" in section and f"way (b) {90 + 40 + 2 * 330} s" in section
    assert "- field_test WER of asr_student_r67_encrl_seed1 falls by >= 40 % relative" in section
    assert ": met (52.6 % with 9.7 min, 90 s)" in section
    assert "test WER rises by <= 5 % relative: met (-6.1 %)" in section
    assert "|2.5|2.5|90|52.5|" in section and "Without replay" in section
    assert (tmp_path / measure.PLOT_NAME).stat().st_size > 0
    logs = tmp_path / "logs" / "adapt"
    assert (logs / "adapt_student_r67_encrl_seed1_min2.5_field_adapt" / "adapt_results.md").is_file()
    assert len((logs / "asr_student_r67_encrl_seed1_adaptref" / "encrl_train.log.epochs.txt").read_text()
               .splitlines()) == 1
    saved = json.loads((tmp_path / "adapt_benchmark.json").read_text())
    assert saved["measurement"]["sweep_student"] == STUDENTS[0]
    # stage 13 rewrites RESULTS.md: the adapt section is kept
    from espnet_lw.results import keep_marked_sections

    assert measure.BEGIN_MARK in keep_marked_sections(tmp_path / "RESULTS.md", "# new\n")


def test_unmet_bounds_and_missing_runs_are_shown(tmp_path):
    exp = fake_tree(tmp_path)
    shutil.rmtree(exp / f"{STUDENTS[1]}_adaptref")
    m = measure.collect(exp, STUDENTS, STUDENTS[1], REF, "field_adapt", ["field_test", "test"], "conf/adapt.yaml",
                        None, {})
    section = measure.render(m, None, {}, plot=False)
    assert f"|{STUDENTS[1]}_adaptref|not run|" in section
    # r83 meets the bounds (128.3 -> 60.0 on field_test in 90 s); over 5 minutes of training it does not
    m["way_a"][STUDENTS[1]]["train_seconds"] = 400.0
    assert any("**not met**" in line and "400 s" in line for line in measure.bounds(m))


def test_cli_dry_run_and_refusals(tmp_path):
    recipe = fake_recipe(tmp_path)
    cli = [sys.executable, "-m", "espnet_lw.bin.adapt_benchmark", "run", "--recipe_dir", str(recipe),
           "--students", " ".join(STUDENTS), "--sweep_student", STUDENTS[0], "--reference", REF, "--dry_run"]
    out = subprocess.run(cli + ["--", "--nbpe", "48"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2 + 1 + 2 + 1 + 2 and all(ln.startswith("./run.sh --stage 1") for ln in lines)
    bad = subprocess.run(cli[:-1] + ["--students", "asr_nope"], capture_output=True, text=True)
    assert bad.returncode == 1 and "not trained: asr_nope" in bad.stderr
    bad = subprocess.run(cli + ["--ways", "c"], capture_output=True, text=True)
    assert bad.returncode == 1 and "--ways takes" in bad.stderr
    assert subprocess.run([sys.executable, "-m", "espnet_lw.bin.adapt_benchmark", "--help"],
                          capture_output=True, text=True).returncode == 0


def test_tune_plans_on_a_speaker_split_and_tabulates(tmp_path):
    exp = fake_tree(tmp_path)
    cmds = measure.tune_plan(str(exp), STUDENTS[0], "field_adapt", ["conf/adapt.yaml", "conf/adapt_noreplay.yaml"],
                             ["--nbpe", "48"])
    assert len(cmds) == 2
    c = cmds[0]
    assert c[c.index("--adapt_set") + 1] == "field_adapt_tune_adapt"
    assert c[c.index("--adapt_test_sets") + 1] == "field_adapt_tune_test dev"  # never field_test
    assert not any("field_test" in x for x in c)
    # one config adapted on the split: its held-out WER and dev before / after
    a = exp / f"adapt_{measure.adapt_tag(STUDENTS[0], 'conf/adapt.yaml', 'field_adapt_tune_adapt')}"
    _result(exp / STUDENTS[0] / TAG / "dev" / "score_wer", 60.0)
    _result(a / TAG / "field_adapt_tune_test" / "score_wer", 80.0)
    _result(a / TAG / "dev" / "score_wer", 61.0)
    (a / "adapt.json").write_text(json.dumps({"data": {"field_seconds": 390}}))
    write_adapt_report(exp / STUDENTS[0], a, TAG, ["field_adapt_tune_test", "dev"], train_seconds=70.0)
    text = measure.render_tune(exp, STUDENTS[0], "field_adapt", ["conf/adapt.yaml", "conf/adapt_noreplay.yaml"],
                               "python -m espnet_lw.bin.adapt_benchmark tune")
    assert "|conf/adapt.yaml|70|6.5|80.0|60.0|61.0|+1.7|" in text
    assert "|conf/adapt_noreplay.yaml|not run|" in text and "Lowest held-out WER: `conf/adapt.yaml` (80.0)" in text
    # the report carries the tuning table
    (exp / "adapt_benchmark" / "tune.md").write_text(text)
    m = measure.collect(exp, STUDENTS, STUDENTS[0], REF, "field_adapt", ["field_test", "test"], "conf/adapt.yaml",
                        None, {})
    assert "### How the adaptation config was chosen" in measure.render(m, None, {}, plot=False)


def test_tune_cli_dry_run(tmp_path):
    recipe = fake_recipe(tmp_path)
    out = subprocess.run([sys.executable, "-m", "espnet_lw.bin.adapt_benchmark", "tune", "--recipe_dir", str(recipe),
                          "--students", " ".join(STUDENTS), "--sweep_student", STUDENTS[1], "--configs",
                          "conf/adapt.yaml conf/adapt_noreplay.yaml", "--dry_run"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 2 and f"exp/{STUDENTS[1]}" in out.stdout
    # a quoted glob pattern is expanded (sorted), as in the README's tuning command
    glob_run = subprocess.run([sys.executable, "-m", "espnet_lw.bin.adapt_benchmark", "tune", "--recipe_dir",
                               str(recipe), "--students", " ".join(STUDENTS), "--sweep_student", STUDENTS[1],
                               "--configs", "conf/adapt_tune/*.yaml", "--dry_run"], capture_output=True, text=True)
    assert glob_run.returncode == 0, glob_run.stderr
    used = [line.split("--adapt_config ")[1].split()[0] for line in glob_run.stdout.splitlines()]
    assert used == sorted(f"conf/adapt_tune/{f.name}" for f in (recipe / "conf" / "adapt_tune").glob("*.yaml"))
    assert len(used) == 10
    bad = subprocess.run([sys.executable, "-m", "espnet_lw.bin.adapt_benchmark", "tune", "--recipe_dir", str(recipe),
                          "--students", " ".join(STUDENTS), "--sweep_student", STUDENTS[1], "--configs", "nope.yaml"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "no such adaptation config: nope.yaml" in bad.stderr
