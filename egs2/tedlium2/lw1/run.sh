#!/usr/bin/env bash
# TED-LIUM 2 (or release 3 'legacy': same dev/test, 452 h of train): train / dev / test as ESPnet's tedlium2 recipe
# (speed perturbation 0.9/1.0/1.1, padded train segments, 180-s pseudo-speakers), with the
# paper's reference model conf/reference_paper.yaml and a sentencepiece unigram 256 vocabulary.
#   ./run.sh                                   # stages 1-13 (downloads the corpus if needed)
#   ./run.sh --release 3                       # TEDLIUM_release-3/legacy instead of release 2
#   ./run.sh --stage 1 --stop_stage 5          # data, speed perturbation, dump, token list only
# All other options: ./lw.sh --help.  The corpus location: db.sh.
set -euo pipefail
export LW_RUN_COMMAND="${LW_RUN_COMMAND:-$0 $*}"  # for RESULTS.md
cd "$(dirname "$0")"
. "$(dirname "$(readlink -f lw.sh)")/recipe_lib.sh"  # parse_opts, die, paper_lw_args

release=2             # TED-LIUM release: 2 or 3 (legacy layout)
local_data_opts=""    # more options for local/data.sh (e.g. "--nj 8"); --release is added
parse_opts "release local_data_opts" "$@"   # the other options go to lw.sh (rest_args)
case "${release}" in 2|3) ;; *) die "--release must be 2 or 3, got '${release}'" ;; esac

train_set=train
valid_set=dev
test_sets="dev test"

paper_lw_args "${train_set}"  # recipe_lib.sh: the options both corpora share
exec ./lw.sh \
    --train_set "${train_set}" \
    --valid_set "${valid_set}" \
    --test_sets "${test_sets}" \
    --local_data_opts "--release ${release} ${local_data_opts}" \
    "${lw_args[@]}" \
    ${rest_args[@]+"${rest_args[@]}"}
