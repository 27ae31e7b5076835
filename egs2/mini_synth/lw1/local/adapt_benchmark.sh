#!/usr/bin/env bash
# Field adaptation of the trained students, measured (issue 12), in one go (thin wrapper of
# python -m espnet_lw.bin.adapt_benchmark run): needs the reference and the EncRL students of
# local/benchmark.sh (the seed-1 students by default), then runs through ./run.sh:
#   way (a)  stage 16 of each student on field_adapt with conf/adapt.yaml,
#            the 66.7 % student also without replay (conf/adapt_noreplay.yaml) and with 2.5 / 5 minutes,
#   way (b)  stage 16 of the reference, then each student derived from the adapted reference (stages 11-13),
# and writes the "adapt" section of RESULTS.md, adapt_benchmark.json, adapt_field_wer_vs_minutes.png and
# logs/adapt/. Re-running resumes (finished stages are skipped). Run from the recipe dir:
#   local/adapt_benchmark.sh [--students "asr_student_r50_encrl_seed1 ..."] [--sweep_student NAME]
#       [--minutes "2.5 5"] [--ways "a b"] [--adapt_config conf/adapt.yaml] [--allow_dirty] [--dry_run]
#       [-- <run.sh options>]
# Report only: python -m espnet_lw.bin.adapt_benchmark report --recipe_dir .
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
command_line="$0"
for a in "$@"; do
    if [[ "${a}" =~ ^[A-Za-z0-9_./=:,+@%-]+$ ]]; then command_line+=" ${a}"; else command_line+=" ${a@Q}"; fi
done
exec python3 -m espnet_lw.bin.adapt_benchmark run --recipe_dir . --command "${command_line}" "$@"
