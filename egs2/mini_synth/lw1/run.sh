#!/usr/bin/env bash
# mini_synth: the embedded synthetic-speech corpus (WordNet sentences read by espeak-ng and flite voices,
# LibriSpeech layout).
# Builds everything offline: corpus -> reference model -> decoding -> sclite -> RESULTS.md.
#   ./run.sh                              # stages 1-13 with the defaults below
#   ./run.sh --stage 12 --stop_stage 13   # any range again; finished stages are skipped
#   ./run.sh --local_data_opts "--size tiny" --asr_args "--max_epoch 1"   # a quick smoke run
# All options: ./lw.sh --help
set -euo pipefail
export LW_RUN_COMMAND="${LW_RUN_COMMAND:-$0 $*}"
cd "$(dirname "$0")"

train_set=train
valid_set=dev
test_sets="dev test field_test"

exec ./lw.sh \
    --train_set "${train_set}" \
    --valid_set "${valid_set}" \
    --test_sets "${test_sets}" \
    --token_type char \
    --asr_config conf/reference_mini.yaml \
    --inference_config conf/decode_ctc_greedy.yaml \
    --min_wav_duration 0.3 --max_wav_duration 20 \
    "$@"
