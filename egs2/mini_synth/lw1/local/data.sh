#!/usr/bin/env bash
# Build the mini_synth corpus (if needed) and prepare Kaldi-style data dirs
# data/{train,dev,test,field_adapt,field_test} and data/noise from it.  Run from the recipe directory
# (egs2/mini_synth/lw1).  The corpus location comes from db.sh ($MINI_SYNTH).
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

usage() {
    cat <<USAGE
Usage: $0 [options]
  Synthesise the mini_synth corpus into \$MINI_SYNTH (see db.sh; skipped when it
  is already complete) and write data/train, data/dev, data/test, data/field_adapt,
  data/field_test (skipped when already complete) and data/noise/wav.scp (the corpus's
  noise bank, for noise augmentation).  Run from egs2/mini_synth/lw1.

Options:
  --size tiny|small|default   corpus size (default: ${size})
  --seed INT                  seed for texts, speakers and noise (default: ${seed})
  --nj INT                    parallel synthesis jobs (default: ${nj})
  --snr_db_range "LOW HIGH"   SNR range (dB) of the site noise in the field splits (default: "${snr_db_range}")
  -h, --help                  show this help
USAGE
}

size=default
seed=0
nj=2
snr_db_range="5 20"
python=${PYTHON:-python3}

while [ $# -gt 0 ]; do
    case "$1" in
        --size|--seed|--nj|--snr_db_range)
            [ $# -ge 2 ] || { echo "ERROR: $1 needs a value" >&2; usage >&2; exit 1; }
            declare "${1#--}=$2"; shift 2 ;;
        --size=*|--seed=*|--nj=*|--snr_db_range=*)
            opt=${1%%=*}; declare "${opt#--}=${1#*=}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "ERROR: unknown option: $1" >&2; usage >&2; exit 1 ;;
    esac
done

if [ ! -f db.sh ]; then
    echo "ERROR: db.sh not found in $(pwd); run this script from egs2/mini_synth/lw1" >&2
    exit 1
fi
. ./db.sh
if [ -z "${MINI_SYNTH:-}" ]; then
    echo "ERROR: db.sh: MINI_SYNTH is empty; set it to the corpus directory" >&2
    exit 1
fi

read -r -a snr_range <<< "${snr_db_range}"
[ "${#snr_range[@]}" -eq 2 ] || { echo "ERROR: --snr_db_range needs two numbers, e.g. \"5 20\"" >&2; exit 1; }
log "Stage 1: corpus ${MINI_SYNTH} (size=${size} seed=${seed} snr_db_range=${snr_db_range})"
"${python}" -m espnet_lw.bin.make_mini_synth --out "${MINI_SYNTH}" --size "${size}" \
    --seed "${seed}" --nj "${nj}" --snr_db_range "${snr_range[0]}" "${snr_range[1]}"

log "Stage 2: Kaldi-style data directories"
mkdir -p data
for split in train dev test field_adapt field_test; do
    dst=data/${split}
    if [ -f "${dst}/wav.scp" ] && [ -f "${dst}/text" ] && [ -f "${dst}/utt2spk" ] && [ -f "${dst}/spk2utt" ] \
        && [ ! "${MINI_SYNTH}/.complete" -nt "${dst}/wav.scp" ]; then
        log "${dst} is already complete; skipping (remove it to redo)"
        continue
    fi
    "${python}" -m espnet_lw.bin.prep_librispeech "${MINI_SYNTH}/${split}" "${dst}" --overwrite
done

if [ ! -f data/noise/wav.scp ] || [ "${MINI_SYNTH}/.complete" -nt data/noise/wav.scp ]; then
    mkdir -p data/noise
    find "$(cd "${MINI_SYNTH}" && pwd)/noise/bank" -name '*.flac' | sort | while read -r f; do
        echo "noise-$(basename "${f}" .flac) ${f}"
    done > data/noise/wav.scp.tmp
    [ -s data/noise/wav.scp.tmp ] || { echo "ERROR: no noise recordings under ${MINI_SYNTH}/noise/bank" >&2; exit 1; }
    mv data/noise/wav.scp.tmp data/noise/wav.scp
    log "data/noise/wav.scp: $(wc -l < data/noise/wav.scp) noise recordings (ESPnet noise_scp format)"
fi

log "Successfully finished. data: $(ls -d data/*/ | tr '\n' ' ')"
