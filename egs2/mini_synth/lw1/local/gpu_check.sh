#!/usr/bin/env bash
# GPU check of the training path at the paper's scale, in a copy made by local/gpu_check_prepare.py
# (run from that copy, on a machine with a GPU): stage 10, then with --ngpu 1 (AMP, as conf/reference_paper.yaml):
#   reference   conf/reference_paper.yaml (12 blocks, ~21 M parameters), --max_epoch 2
#   encrl       conf_gpu/student_r67.yaml: the reference-target cache, EncRL 1 + fine-tune 2 epochs
#   kd          the KD baseline from the same cache, 3 epochs
#   encrl_otf   EncRL with the reference computed on the fly (--ref_cache false; no KD in its fine-tune)
# each decoded on dev on the GPU (stage 12) and scored (13). Then a table: per training, epoch seconds and
# seconds of training audio per second (from train.log), and the stage times (exp/stage_times.tsv).
#   local/gpu_check.sh [--steps "reference encrl kd encrl_otf"] [--ref_epochs 2] [--step_timeout 300]
# Needs sclite (SCLITE=/path/to/sclite if it is not on PATH), not sox; PYTHONPATH must reach espnet_lw.
# Logs: logs_<step>.log beside run.sh; the summary: gpu_check_summary.txt.
set -euo pipefail

steps="reference encrl kd encrl_otf"
ref_epochs=2
step_timeout=300
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --steps) steps="$2"; shift 2 ;;
        --ref_epochs) ref_epochs="$2"; shift 2 ;;
        --step_timeout) step_timeout="$2"; shift 2 ;;
        *) echo "ERROR: unknown option $1 (see $0 --help)" >&2; exit 1 ;;
    esac
done
[ -d conf_gpu ] && [ -f dump/raw/train/wav.scp ] \
    || { echo "ERROR: run from a copy made by local/gpu_check_prepare.py (no conf_gpu/ or dump/raw/train here)" >&2; exit 1; }

common=(--required_tools sclite --nj 8 --ngpu 1 --gpu_inference true --inference_nj 1 --test_sets dev
        --asr_config conf/reference_paper.yaml --asr_args "--max_epoch ${ref_epochs}")
student=(--student_config conf_gpu/student_r67.yaml)
run_step() {  # run_step NAME run.sh-options...: its log in logs_NAME.log; a failure is reported, not fatal
    local name="$1"; shift
    echo "$(date +%T) ${name}: ./run.sh $*"
    if timeout "${step_timeout}" ./run.sh "${common[@]}" "$@" > "logs_${name}.log" 2>&1; then
        echo "$(date +%T) ${name}: done"
    else
        echo "$(date +%T) ${name}: FAILED (exit $?); last lines of logs_${name}.log:"
        grep -v "it/s\|utt/s\|Warning" "logs_${name}.log" | tail -n 8
    fi
}
run_step stats --stage 10 --stop_stage 10
for s in ${steps}; do
    case "${s}" in
        reference) run_step reference --stage 11 --stop_stage 13 ;;
        encrl) run_step encrl --stage 11 --stop_stage 13 "${student[@]}" --student_mode encrl ;;
        kd) run_step kd --stage 11 --stop_stage 13 "${student[@]}" --student_mode kd ;;
        encrl_otf) run_step encrl_otf --stage 11 --stop_stage 13 --student_config conf_gpu/student_r67_nokd.yaml \
                       --student_mode encrl --ref_cache false --student_tag student_r67_encrl_otf ;;
        *) echo "ERROR: unknown step ${s} (reference encrl kd encrl_otf)" >&2; exit 1 ;;
    esac
done

python3 - <<'EOF' | tee gpu_check_summary.txt
import glob
from pathlib import Path
from espnet_lw.benchmark.timing import parse_epoch_times
rows = {}
for line in Path("dump/raw/train/utt2num_samples").read_text().splitlines():
    rows[line.split()[0]] = int(line.split()[1])
audio = sum(rows.values()) / 16000
print(f"training list: {len(rows)} utterances, {audio / 3600:.2f} h ({audio / len(rows):.1f} s each)")
print("| training | epoch | train s | valid s | training audio s per s |")
print("| --- | --- | --- | --- | --- |")
for log in sorted(glob.glob("exp/*/train.log") + glob.glob("exp/*/encrl/train.log")):
    for epoch, t in parse_epoch_times(log).items():
        print(f"| {Path(log).parent.relative_to('exp')} | {epoch} | {t.train:.2f} | {t.valid:.2f} | {audio / t.train:,.0f} |")
print()
print(Path("exp/stage_times.tsv").read_text() if Path("exp/stage_times.tsv").exists() else "(no stage times)")
for res in sorted(glob.glob("exp/*/decode_*/dev/score_wer/result.txt")):
    print(res, [ln.strip() for ln in open(res) if "Sum/Avg" in ln][:1])
EOF
