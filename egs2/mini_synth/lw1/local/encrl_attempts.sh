#!/usr/bin/env bash
# Issue 10, item 4: the documented EncRL attempts (conf/student_r67_{encrl3,nbr,layers}.yaml by default),
# each trained as an EncRL student (stage 11) and decoded and scored on dev only (stages 12-13): tuning
# never reads test. Needs the reference of ./run.sh (and its reference-target cache, which is reused).
# Prints a dev WER table with the seed's control / kd / shipped EncRL students of each attempt's ratio beside
# the attempts when they exist (local/benchmark.sh trains them). Re-running resumes (finished stages are skipped).
# Run from the recipe dir:
#   local/encrl_attempts.sh [--seed 1] [--configs "conf/student_r67_nbr.yaml ..."] [-- <run.sh options>]
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac

seed=1
configs="conf/student_r67_encrl3.yaml conf/student_r67_nbr.yaml conf/student_r67_layers.yaml"
while [ $# -gt 0 ]; do
    case "$1" in
        --seed|--configs)
            [ $# -ge 2 ] || { echo "ERROR: option $1 needs a value" >&2; exit 1; }
            printf -v "${1#--}" '%s' "$2"; shift 2 ;;
        --) shift; break ;;
        *) echo "ERROR: unexpected argument '$1' (see --help)" >&2; exit 1 ;;
    esac
done
[[ "${seed}" =~ ^[0-9]+$ ]] || { echo "ERROR: --seed must be a whole number, got '${seed}'" >&2; exit 1; }

tags=()
for c in ${configs}; do
    [ -f "${c}" ] || { echo "ERROR: ${c}: no such student config (see conf/student_*.yaml)" >&2; exit 1; }
    tag="$(basename "${c}" .yaml)_encrl_seed${seed}"
    tags+=("${tag}")
    ./run.sh --stage 11 --stop_stage 13 --test_sets dev --student_config "${c}" --student_mode encrl \
        --student_seed "${seed}" --student_tag "${tag}" "$@"
done

# the table: the attempts and, when trained, the seed's baselines and shipped EncRL student at 66.7 %
python3 - "${seed}" "${tags[@]}" <<'EOF'
import re
import sys
from pathlib import Path

from espnet_lw.scoring import parse_result

seed, tags = sys.argv[1], sys.argv[2:]
rows = []
for ratio in dict.fromkeys(m.group(1) for m in (re.match(r"student_r(\d+)_", t) for t in tags) if m):
    rows += [f"student_r{ratio}_{m}_seed{seed}" for m in ("control", "kd", "encrl")]  # that ratio's baselines
    rows += [t for t in tags if t.startswith(f"student_r{ratio}_")]
rows += [t for t in tags if t not in rows]
print(f"{'system':40s} {'dev WER':>8s} {'dev CER':>8s}")
for tag in rows:
    res = sorted(Path("exp").glob(f"asr_{tag}/decode_*/dev/score_wer/result.txt"))
    if not res:
        continue
    cer = res[0].parent.parent / "score_cer" / "result.txt"
    print(f"{tag:40s} {parse_result(res[0]).err:8.1f} {parse_result(cer).err if cer.is_file() else float('nan'):8.1f}")
EOF
