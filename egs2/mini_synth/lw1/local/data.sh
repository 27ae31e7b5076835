#!/usr/bin/env bash
# Build the mini_synth corpus (if needed) and prepare Kaldi-style data dirs
# data/{train,dev,test,field} from it.  Run from the recipe directory
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
  is already complete) and write data/train, data/dev, data/test, data/field
  (skipped when already complete).  Run from egs2/mini_synth/lw1.

Options:
  --size tiny|small|default   corpus size (default: ${size})
  --seed INT                  seed for texts, speakers and noise (default: ${seed})
  --nj INT                    parallel synthesis jobs (default: ${nj})
  --snr_db FLOAT              SNR of the noise added to the field split (default: ${snr_db})
  -h, --help                  show this help
USAGE
}

size=default
seed=0
nj=2
snr_db=10
python=${PYTHON:-python3}

while [ $# -gt 0 ]; do
    case "$1" in
        --size|--seed|--nj|--snr_db)
            [ $# -ge 2 ] || { echo "ERROR: $1 needs a value" >&2; usage >&2; exit 1; }
            declare "${1#--}=$2"; shift 2 ;;
        --size=*|--seed=*|--nj=*|--snr_db=*)
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

log "Stage 1: corpus ${MINI_SYNTH} (size=${size} seed=${seed} snr_db=${snr_db})"
"${python}" -m espnet_lw.bin.make_mini_synth --out "${MINI_SYNTH}" --size "${size}" \
    --seed "${seed}" --nj "${nj}" --snr_db "${snr_db}"

log "Stage 2: Kaldi-style data directories"
mkdir -p data
for split in train dev test field; do
    dst=data/${split}
    if [ -f "${dst}/wav.scp" ] && [ -f "${dst}/text" ] && [ -f "${dst}/utt2spk" ] && [ -f "${dst}/spk2utt" ] \
        && [ ! "${MINI_SYNTH}/.complete" -nt "${dst}/wav.scp" ]; then
        log "${dst} is already complete; skipping (remove it to redo)"
        continue
    fi
    "${python}" -m espnet_lw.bin.prep_librispeech "${MINI_SYNTH}/${split}" "${dst}" --overwrite
done

log "Successfully finished. data: $(ls -d data/*/ | tr '\n' ' ')"
