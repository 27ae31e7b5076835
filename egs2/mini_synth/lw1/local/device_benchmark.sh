#!/usr/bin/env bash
# The device benchmark of this recipe (issue 11; thin wrapper of python -m espnet_lw.bin.device_benchmark):
# every trained model under exp/ (reference and students, valid.loss.ave.pth) and the paper-scale models
# (conf/reference_paper.yaml + 6/4/2-block students, random weights) exported to ONNX fp32 + int8 and measured
# beside ESPnet's torch Speech2Text: size, load time, whole-path RTF on the test set at 1 and 2 threads,
# latency of a 5 s file, peak memory, cold start of `transcribe`, GFLOP/s, test WER and int8's cost.
# Writes exp/device/ (device.json, probes, exports), the device section of RESULTS.md, "device" in
# benchmark.json and device_wer_vs_rtf.png.
# Run from the recipe dir, after the models are trained (./run.sh, local/benchmark.sh):
#   local/device_benchmark.sh [--test_set test] [--threads "1 2"] [--latency_runs 20] [--paper_models true]
#       [--limit N] [--paper_limit N] [--out_dir exp/device] [other python -m espnet_lw.bin.device_benchmark options...]
set -euo pipefail

command_line="$0"  # the exact command, quoted so that it can be pasted back
for a in "$@"; do
    if [[ "${a}" =~ ^[A-Za-z0-9_./=:,+@%-]+$ ]]; then command_line+=" ${a}"; else command_line+=" ${a@Q}"; fi
done
test_set=test
threads="1 2"
latency_runs=20
paper_models=true
expdir=exp
dumpdir=dump
out_dir=exp/device
python=python3
extra=()

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --test_set|--threads|--latency_runs|--paper_models|--expdir|--dumpdir|--out_dir|--python)
            [ $# -ge 2 ] || { echo "ERROR: option $1 needs a value" >&2; exit 1; }
            printf -v "${1#--}" '%s' "$2"; shift 2 ;;
        --*)
            extra+=("$1"); shift
            # the values of a pass-through option (several for --exp_dirs / --backends)
            while [ $# -gt 0 ] && [[ "$1" != --* ]]; do extra+=("$1"); shift; done ;;
        *) echo "ERROR: unexpected argument '$1' (options look like --name value)" >&2; exit 1 ;;
    esac
done

# shellcheck disable=SC2086  # --threads "1 2" is a list
exec nice -n "${BENCHMARK_NICE:-0}" "${python}" -m espnet_lw.bin.device_benchmark --recipe_dir . \
    --test_set "${test_set}" --threads ${threads} --latency_runs "${latency_runs}" \
    --paper_models "${paper_models}" --expdir "${expdir}" --dumpdir "${dumpdir}" --out_dir "${out_dir}" \
    --command "${command_line}" "${extra[@]}"
