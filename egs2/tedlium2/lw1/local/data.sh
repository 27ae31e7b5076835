#!/usr/bin/env bash
# TED-LIUM release 2 (OpenSLR 19) or release 3 'legacy' (OpenSLR 51: release 2's dev and test talks,
# all 2,351 release-3 talks, 452 h, as train): download when missing, then write Kaldi-style data dirs
# data/{train,dev,test} as ESPnet's TED-LIUM recipes do (segments, padded train segments,
# pseudo-speakers of at most 180 s).  Run from egs2/tedlium2/lw1.  The corpus location comes
# from db.sh ($TEDLIUM: the directory that contains TEDLIUM_release2/ or TEDLIUM_release-3/).
set -euo pipefail
# log, die, parse_script_opts, fetch_archive, ...: shared with the other recipes, next to the driver
# that the recipe's lw.sh links to
lib="$(dirname "$(readlink -f "$(dirname "$0")/../lw.sh")")/recipe_lib.sh"
. "${lib}" || { echo "ERROR: cannot read ${lib} (lw.sh of the recipe must link to egs2/TEMPLATE/lw1/lw.sh)" >&2; exit 1; }

release=2
nj=2
wav_cmd=auto
keep_archives=false
python=${PYTHON:-python3}

usage() {
    cat <<USAGE
Usage: $0 [options]
  Download TED-LIUM into \$TEDLIUM (see db.sh) unless it is there already, verify the archive's
  checksum, extract it, and write data/train, data/dev, data/test.  Run from egs2/tedlium2/lw1.

Options:
  --release 2|3           2: TEDLIUM_release2/{train,dev,test}; 3: TEDLIUM_release-3/legacy/{train,dev,test}
                          (default: ${release})
  --nj INT                parallel preparation jobs (default: ${nj})
  --wav_cmd auto|sph2pipe|sox|path
                          wav.scp entries (default: ${wav_cmd}: sph2pipe if installed, else sox)
  --keep_archives BOOL    keep the archive after extraction (default: ${keep_archives})
  -h, --help              show this help
Environment:
  TEDLIUM      corpus root (db.sh default: downloads)
  TEDLIUM_URL  download base URL (default: https://www.openslr.org/resources/19 for release 2,
               https://www.openslr.org/resources/51 for release 3)
USAGE
}

parse_script_opts usage "release nj wav_cmd keep_archives" "$@"

# SHA-256 of the OpenSLR archives: the values torchaudio's TEDLIUM dataset class verifies
# (OpenSLR publishes no checksum for resources 19 and 51).
case "${release}" in
    2) top=TEDLIUM_release2; sets_root=TEDLIUM_release2; archive_name=TEDLIUM_release2.tar.gz archive_gb=35
       default_url=https://www.openslr.org/resources/19
       sha256=93281b5fcaaae5c88671c9d000b443cb3c7ea3499ad12010b3934ca41a7b9c58 ;;
    3) top=TEDLIUM_release-3; sets_root=TEDLIUM_release-3/legacy; archive_name=TEDLIUM_release-3.tgz archive_gb=51
       default_url=https://www.openslr.org/resources/51
       sha256=ad1e454d14d1ad550bc2564c462d87c7a7ec83d4dc2b9210f22ab4973b9eccdb ;;
    *) echo "ERROR: --release must be 2 or 3, got '${release}'" >&2; exit 1 ;;
esac
check_nj "${nj}"
check_bool keep_archives "${keep_archives}"

[ -f db.sh ] || die "db.sh not found in $(pwd); run this script from egs2/tedlium2/lw1"
. ./db.sh
[ -n "${TEDLIUM:-}" ] || die "db.sh: TEDLIUM is empty; set it to the directory that contains ${top}/"
base_url=${TEDLIUM_URL:-${default_url}}
offline_msg="download failed; put ${top} under \$TEDLIUM (db.sh) and re-run"

corpus_present() {  # every set has sph/ and stm/
    local s
    for s in train dev test; do
        [ -d "${TEDLIUM}/${sets_root}/${s}/sph" ] && [ -d "${TEDLIUM}/${sets_root}/${s}/stm" ] || return 1
    done
}

log "Stage 1: corpus ${TEDLIUM}/${sets_root}"
if corpus_present; then
    log "${TEDLIUM}/${sets_root}/{train,dev,test}/{sph,stm} present: not downloaded"
else
    [ ! -e "${TEDLIUM}/${top}" ] || die "${TEDLIUM}/${top} exists but lacks ${sets_root#${top}}/{train,dev,test}/{sph,stm}: an unfinished copy? remove it and re-run"
    archive="${TEDLIUM}/${archive_name}"
    log "TED-LIUM release ${release}: one archive of about ${archive_gb} GB"
    fetch_archive "${base_url}/${archive_name}" "${archive}" sha256 "${sha256}" "${offline_msg}"
    tmp="${TEDLIUM}/.extract.${top}.tmp"
    extract_archive "${archive}" "${tmp}"
    [ -d "${tmp}/${top}" ] || die "${archive} does not contain ${top}/"
    mv "${tmp}/${top}" "${TEDLIUM}/${top}"   # appears complete, or not at all
    finish_archive "${archive}" "${tmp}" "${keep_archives}"
    corpus_present || die "${TEDLIUM}/${sets_root}/{train,dev,test}/{sph,stm} missing after extraction"
fi

log "Stage 2: Kaldi-style data directories (wav.scp via --wav_cmd ${wav_cmd})"
mkdir -p data
prep_set() {  # prep_set SET: data/SET from the set's sph/ and stm/
    local s=$1 pad=()
    # ESPnet's TED-LIUM recipes widen train segments (its segmentation is tight)
    [ "${s}" = train ] && pad=(--pad_start 0.15 --pad_end 0.1)
    "${python}" -m espnet_lw.bin.prep_tedlium ${pad[@]+"${pad[@]}"} --wav_cmd "${wav_cmd}" --overwrite \
        "${TEDLIUM}/${sets_root}/${s}" "data/${s}"
    echo "${sets_root}" > "data/${s}/.source"
}
for s in train dev test; do
    dst=data/${s}
    if [ -f "${dst}/wav.scp" ] && [ -f "${dst}/segments" ] && [ -f "${dst}/text" ] && [ -f "${dst}/utt2spk" ] \
        && [ -f "${dst}/spk2utt" ] && [ "$(cat "${dst}/.source" 2>/dev/null)" = "${sets_root}" ]; then
        log "${dst} is already complete; skipping (remove it to redo)"
        continue
    fi
    spawn "${nj}" prep_set "${s}"
done
wait_spawned "data preparation"

log "Successfully finished. data: $(ls -d data/*/ | tr '\n' ' ')"
