#!/usr/bin/env bash
# LibriSpeech: the paper's setting (train-clean-100, as ESPnet's egs2/librispeech_100 recipe):
#   train: train_clean_100 (x3 speed perturbation), valid: dev (= dev_clean + dev_other),
#   test: test_clean test_other dev_clean dev_other, sentencepiece unigram 256,
#   reference model conf/reference_paper.yaml (12 Conformer blocks, d_model 256, CTC only).
#   ./run.sh                                  # stages 1-13 (downloads the corpus if needed)
#   ./run.sh --stage 1 --stop_stage 5         # data, speed perturbation, dump, token list only
#   ./run.sh --train_subset 960               # train on all 960 h (data/train_960)
# All other options: ./lw.sh --help.  The corpus location: db.sh.
set -euo pipefail
export LW_RUN_COMMAND="${LW_RUN_COMMAND:-$0 $*}"  # for RESULTS.md
cd "$(dirname "$0")"
. "$(dirname "$(readlink -f lw.sh)")/recipe_lib.sh"  # parse_opts, die, paper_lw_args

train_subset=100       # 100 | 460 | 960 hours of training data
local_data_opts=""     # more options for local/data.sh (e.g. "--nj 8"); --train_subset is added
parse_opts "train_subset local_data_opts" "$@"   # the other options go to lw.sh (rest_args)
case "${train_subset}" in
    100) train_set=train_clean_100 ;;
    460) train_set=train_clean_460 ;;
    960) train_set=train_960 ;;
    *) die "--train_subset must be 100, 460 or 960, got '${train_subset}'" ;;
esac
valid_set=dev
test_sets="test_clean test_other dev_clean dev_other"

paper_lw_args "${train_set}"  # recipe_lib.sh: the options both corpora share
exec ./lw.sh \
    --train_set "${train_set}" \
    --valid_set "${valid_set}" \
    --test_sets "${test_sets}" \
    --local_data_opts "--train_subset ${train_subset} ${local_data_opts}" \
    "${lw_args[@]}" \
    ${rest_args[@]+"${rest_args[@]}"}
