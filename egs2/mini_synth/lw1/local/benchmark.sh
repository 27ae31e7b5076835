#!/usr/bin/env bash
# The students benchmark of this recipe, in one go (thin wrapper of python -m espnet_lw.bin.benchmark run):
#   1. the reference (./run.sh stages 1-13; finished stages are skipped),
#   2. for each ratio NN: scratch, pruned and EncRL students of conf/student_rNN.yaml (stages 11-13),
#   3. the EncRL loss ablations at --ablation_ratio (mse only, clip only),
#   4. CTC-greedy WER of every epoch on --epoch_test_sets (cached in exp/benchmark/epochs/),
#   5. exp/benchmark/benchmark.json, the benchmark section of RESULTS.md, the WER-vs-time plot
#      (+ copies benchmark.json and benchmark_wer_vs_time.png next to RESULTS.md).
# Run from the recipe dir:
#   local/benchmark.sh [--ratios "50 67 83"] [--ablation_ratio 67] [--test_sets "dev test field"] \
#       [--epoch_test_sets "test"] [--student_args ""] [--expdir exp] [--dumpdir dump] [run.sh options...]
# Other options go to every ./run.sh call (e.g. --nbpe 48 --asr_args "--max_epoch 1").
# Re-running resumes: trained models and decoded epochs are reused.
# Report only (no training): python -m espnet_lw.bin.benchmark report --recipe_dir .
set -euo pipefail

command_line="$0"  # the exact command, quoted so that it can be pasted back
for a in "$@"; do
    if [[ "${a}" =~ ^[A-Za-z0-9_./=:,+@%-]+$ ]]; then command_line+=" ${a}"; else command_line+=" ${a@Q}"; fi
done
ratios="50 67 83"
ablation_ratio=67
test_sets="dev test field"
epoch_test_sets="test"
student_args=""
expdir=exp
dumpdir=dump
python=python3
run_args=()

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --ratios|--ablation_ratio|--test_sets|--epoch_test_sets|--student_args|--expdir|--dumpdir|--python)
            [ $# -ge 2 ] || { echo "ERROR: option $1 needs a value" >&2; exit 1; }
            printf -v "${1#--}" '%s' "$2"; shift 2 ;;
        --*=*)
            name="${1%%=*}"
            case "${name}" in
                --ratios|--ablation_ratio|--test_sets|--epoch_test_sets|--student_args|--expdir|--dumpdir|--python)
                    printf -v "${name#--}" '%s' "${1#*=}"; shift ;;
                *) run_args+=("$1"); shift ;;
            esac ;;
        --*)
            [ $# -ge 2 ] || { echo "ERROR: option $1 needs a value" >&2; exit 1; }
            run_args+=("$1" "$2"); shift 2 ;;
        *) echo "ERROR: unexpected argument '$1' (options look like --name value)" >&2; exit 1 ;;
    esac
done

exec nice -n "${BENCHMARK_NICE:-0}" "${python}" -m espnet_lw.bin.benchmark run --recipe_dir . \
    --ratios "${ratios}" --ablation_ratio "${ablation_ratio}" --test_sets "${test_sets}" \
    --epoch_test_sets "${epoch_test_sets}" --student_args="${student_args}" \
    --expdir "${expdir}" --dumpdir "${dumpdir}" --command "${command_line}" -- "${run_args[@]}"
