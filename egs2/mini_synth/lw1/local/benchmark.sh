#!/usr/bin/env bash
# The students benchmark of this recipe, in one go (thin wrapper of python -m espnet_lw.bin.benchmark run):
#   0. refuses a dirty checkout (or an expdir begun at another commit) unless --allow_dirty,
#   1. the reference (./run.sh stages 1-13; finished stages are skipped),
#   2. for each ratio NN: scratch, pruned, control, kd and encrl students of conf/student_rNN.yaml
#      (stages 11-13), every run with an explicit --student_seed: all --seeds at --seed_ratios, the first
#      seed elsewhere (tags student_rNN_<mode>_seed<N>),
#   3. the EncRL loss ablations at --ablation_ratio (one alignment term each, the ratio's seeds) and, with
#      --budget_epochs "3 8 16", --budget_config (the paper's setting) with each number of EncRL epochs,
#   4. CTC-greedy WER of every epoch on --epoch_test_sets (dev: the target set; cached in exp/benchmark/epochs/),
#   5. exp/benchmark/benchmark.json, the benchmark section of RESULTS.md, the WER-vs-time plot and the logs
#      behind the numbers (copies benchmark.json, benchmark_wer_vs_time.png, logs/benchmark/ next to RESULTS.md).
# Run from the recipe dir:
#   local/benchmark.sh [--ratios "50 67 83"] [--seeds "1 2 3"] [--seed_ratios 67] [--ablation_ratio 67] \
#       [--modes "scratch pruned control kd encrl"] [--test_sets "dev test field_test"] [--epoch_test_sets dev] \
#       [--student_args ""] [--budget_config conf/student_r67_paper.yaml] [--budget_epochs ""] \
#       [--expdir exp] [--dumpdir dump] [--allow_dirty] [--dry_run] [run.sh options...]
# Other options go to every ./run.sh call (e.g. --nbpe 48 --asr_args "--max_epoch 1").
# Re-running resumes: trained models and decoded epochs are reused (at the same commit only).
# Report only (no training): python -m espnet_lw.bin.benchmark report --recipe_dir .
set -euo pipefail

command_line="$0"  # the exact command, quoted so that it can be pasted back
for a in "$@"; do
    if [[ "${a}" =~ ^[A-Za-z0-9_./=:,+@%-]+$ ]]; then command_line+=" ${a}"; else command_line+=" ${a@Q}"; fi
done
ratios="50 67 83"
seeds="1 2 3"
seed_ratios="67"
modes="scratch pruned control kd encrl"
ablation_ratio=67
test_sets="dev test field_test"
epoch_test_sets="dev"
student_args=""
budget_config=conf/student_r67_paper.yaml
budget_epochs=""
expdir=exp
dumpdir=dump
python=python3
flags=()
run_args=()
valued="--ratios|--seeds|--seed_ratios|--modes|--ablation_ratio|--test_sets|--epoch_test_sets|--student_args"
valued+="|--expdir|--dumpdir|--python|--budget_config|--budget_epochs"

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --allow_dirty|--dry_run) flags+=("$1"); shift ;;
        --*=*)
            name="${1%%=*}"
            if [[ "${name}" =~ ^(${valued})$ ]]; then
                printf -v "${name#--}" '%s' "${1#*=}"; shift
            else
                run_args+=("$1"); shift
            fi ;;
        --*)
            [ $# -ge 2 ] || { echo "ERROR: option $1 needs a value" >&2; exit 1; }
            if [[ "$1" =~ ^(${valued})$ ]]; then
                printf -v "${1#--}" '%s' "$2"
            else
                run_args+=("$1" "$2")
            fi
            shift 2 ;;
        *) echo "ERROR: unexpected argument '$1' (options look like --name value)" >&2; exit 1 ;;
    esac
done

exec nice -n "${BENCHMARK_NICE:-0}" "${python}" -m espnet_lw.bin.benchmark run --recipe_dir . \
    --ratios "${ratios}" --seeds "${seeds}" --seed_ratios "${seed_ratios}" --modes "${modes}" \
    --ablation_ratio "${ablation_ratio}" --test_sets "${test_sets}" \
    --epoch_test_sets "${epoch_test_sets}" --student_args="${student_args}" \
    --budget_config "${budget_config}" --budget_epochs "${budget_epochs}" \
    --expdir "${expdir}" --dumpdir "${dumpdir}" --command "${command_line}" ${flags[@]+"${flags[@]}"} \
    -- ${run_args[@]+"${run_args[@]}"}
