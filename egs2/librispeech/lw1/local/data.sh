#!/usr/bin/env bash
# LibriSpeech (OpenSLR resource 12): download what is missing, then write Kaldi-style data dirs
#   data/{dev_clean,dev_other,test_clean,test_other}, data/dev (= dev_clean + dev_other) and the
#   training set: data/train_clean_100 | data/train_clean_460 (100+360) | data/train_960 (100+360+500).
# Run from egs2/librispeech/lw1.  The corpus location comes from db.sh ($LIBRISPEECH: the
# directory that contains LibriSpeech/).
set -euo pipefail
# log, die, parse_script_opts, fetch_archive, ...: shared with the other recipes, next to the driver
# that the recipe's lw.sh links to
lib="$(dirname "$(readlink -f "$(dirname "$0")/../lw.sh")")/recipe_lib.sh"
. "${lib}" || { echo "ERROR: cannot read ${lib} (lw.sh of the recipe must link to egs2/TEMPLATE/lw1/lw.sh)" >&2; exit 1; }

train_subset=100
nj=2
keep_archives=false
checksums=""
python=${PYTHON:-python3}

usage() {
    cat <<USAGE
Usage: $0 [options]
  Download the LibriSpeech parts that are not under \$LIBRISPEECH/LibriSpeech yet (see db.sh),
  verify them against the published md5 checksums, extract them, and write the Kaldi-style data
  dirs (dev_clean dev_other dev test_clean test_other + the training set).  Run from
  egs2/librispeech/lw1.  Nothing is downloaded for a part whose directory already exists.

Options:
  --train_subset 100|460|960  training hours: train-clean-100 [-> data/train_clean_100],
                              +train-clean-360 [-> data/train_clean_460], +train-other-500
                              [-> data/train_960] (default: ${train_subset})
  --nj INT                    parallel preparation jobs (default: ${nj})
  --keep_archives BOOL        keep the .tar.gz files after extraction (default: ${keep_archives})
  --checksums FILE            md5sum-format file ('<md5>  <part>.tar.gz' lines) replacing the
                              built-in checksums, for a private mirror with repacked archives
  -h, --help                  show this help
Environment:
  LIBRISPEECH      corpus root (db.sh default: downloads)
  LIBRISPEECH_URL  download base URL (default: https://www.openslr.org/resources/12; mirrors:
                   https://us.openslr.org/resources/12, https://openslr.elda.org/resources/12)
USAGE
}

parse_script_opts usage "train_subset nj keep_archives checksums" "$@"

case "${train_subset}" in
    100) train_parts="train-clean-100"; train_set=train_clean_100 ;;
    460) train_parts="train-clean-100 train-clean-360"; train_set=train_clean_460 ;;
    960) train_parts="train-clean-100 train-clean-360 train-other-500"; train_set=train_960 ;;
    *) echo "ERROR: --train_subset must be 100, 460 or 960, got '${train_subset}'" >&2; exit 1 ;;
esac
check_nj "${nj}"
check_bool keep_archives "${keep_archives}"

[ -f db.sh ] || die "db.sh not found in $(pwd); run this script from egs2/librispeech/lw1"
. ./db.sh
[ -n "${LIBRISPEECH:-}" ] || die "db.sh: LIBRISPEECH is empty; set it to the directory that contains LibriSpeech/"
base_url=${LIBRISPEECH_URL:-https://www.openslr.org/resources/12}

# md5 checksums published by OpenSLR (https://www.openslr.org/resources/12/md5sum.txt)
declare -A md5=(
    [dev-clean]=42e2234ba48799c1f50f24a7926300a1
    [dev-other]=c8d0bcc9cca99d4f8b62fcc847357931
    [test-clean]=32fa31d27d2e1cad72775fee3f4849a9
    [test-other]=fb5a50374b501bb3bac4815ee91d3135
    [train-clean-100]=2a93770f6d5c6c964bc36631d331a522
    [train-clean-360]=c0e676e450a7ff2f54aeade5171606fa
    [train-other-500]=d1a0fd59409feb2c614ce4d30c387708
)
# utterances per part in the official release (a mismatch is reported, not fatal)
declare -A n_utts=(
    [dev-clean]=2703 [dev-other]=2864 [test-clean]=2620 [test-other]=2939
    [train-clean-100]=28539 [train-clean-360]=104014 [train-other-500]=148688
)
if [ -n "${checksums}" ]; then
    [ -f "${checksums}" ] || die "--checksums ${checksums}: no such file"
    while read -r sum name _; do
        [ -n "${sum}" ] || continue
        name=${name#\*}; md5[${name%.tar.gz}]=${sum}
    done < "${checksums}"
fi

offline_msg="download failed; put LibriSpeech under \$LIBRISPEECH (db.sh) and re-run"

# fetch_part PART: make ${LIBRISPEECH}/LibriSpeech/PART exist (download + verify + extract)
fetch_part() {
    local part=$1 root="${LIBRISPEECH}/LibriSpeech"
    local dir="${root}/${part}" archive="${LIBRISPEECH}/${part}.tar.gz"
    if [ -d "${dir}" ]; then
        if ! find "${dir}" -mindepth 3 -maxdepth 3 -name '*.trans.txt' -print -quit | grep -q .; then
            die "${dir} exists but holds no <speaker>/<chapter>/*.trans.txt: an unfinished copy? remove it and re-run (it will be downloaded again)"
        fi
        local n
        n=$(find "${dir}" -mindepth 3 -maxdepth 3 -name '*.flac' | wc -l)
        if [ "${n}" -ne "${n_utts[${part}]}" ]; then
            log "WARNING: ${dir} has ${n} .flac files, the official ${part} has ${n_utts[${part}]} (a subset or partial copy?)"
        fi
        log "${dir} is present: not downloaded"
        return 0
    fi
    fetch_archive "${base_url}/${part}.tar.gz" "${archive}" md5 "${md5[${part}]}" "${offline_msg}"
    local tmp="${LIBRISPEECH}/.extract.${part}.tmp"
    extract_archive "${archive}" "${tmp}"
    [ -d "${tmp}/LibriSpeech/${part}" ] || die "${archive} does not contain LibriSpeech/${part}/"
    mkdir -p "${root}"
    # top-level files (SPEAKERS.TXT, CHAPTERS.TXT, README.TXT, ...) are in every archive
    find "${tmp}/LibriSpeech" -mindepth 1 -maxdepth 1 -type f | while read -r f; do
        [ -e "${root}/$(basename "${f}")" ] || mv "${f}" "${root}/"
    done
    mv "${tmp}/LibriSpeech/${part}" "${dir}"   # the part appears complete, or not at all
    finish_archive "${archive}" "${tmp}" "${keep_archives}"
    log "extracted ${dir}"
}

parts="dev-clean dev-other test-clean test-other ${train_parts}"
log "Stage 1: corpus under ${LIBRISPEECH}/LibriSpeech (${parts})"
for part in ${parts}; do
    fetch_part "${part}"
done

log "Stage 2: Kaldi-style data directories"
mkdir -p data
for part in ${parts}; do
    dst=data/${part//-/_}
    if [ -f "${dst}/wav.scp" ] && [ -f "${dst}/text" ] && [ -f "${dst}/utt2spk" ] && [ -f "${dst}/spk2utt" ]; then
        log "${dst} is already complete; skipping (remove it to redo)"
        continue
    fi
    spawn "${nj}" "${python}" -m espnet_lw.bin.prep_librispeech "${LIBRISPEECH}/LibriSpeech/${part}" "${dst}" --overwrite
done
wait_spawned "data preparation"

"${python}" -m espnet_lw.bin.combine_data --overwrite data/dev data/dev_clean data/dev_other
case "${train_subset}" in
    460) "${python}" -m espnet_lw.bin.combine_data --overwrite data/${train_set} data/train_clean_100 data/train_clean_360 ;;
    960) "${python}" -m espnet_lw.bin.combine_data --overwrite data/${train_set} data/train_clean_100 data/train_clean_360 data/train_other_500 ;;
esac

log "Successfully finished. training set: data/${train_set}; data: $(ls -d data/*/ | tr '\n' ' ')"
