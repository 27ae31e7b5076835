#!/usr/bin/env bash
# TED-LIUM release 2 (OpenSLR 19) or release 3 'legacy' (OpenSLR 51, the release-2 split with
# release-3 audio/transcripts): download when missing, then write Kaldi-style data dirs
# data/{train,dev,test} as ESPnet's TED-LIUM recipes do (segments, padded train segments,
# pseudo-speakers of at most 180 s).  Run from egs2/tedlium2/lw1.  The corpus location comes
# from db.sh ($TEDLIUM: the directory that contains TEDLIUM_release2/ or TEDLIUM_release-3/).
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}
die() { echo "ERROR: $*" >&2; exit 1; }

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

while [ $# -gt 0 ]; do
    case "$1" in
        --release|--nj|--wav_cmd|--keep_archives)
            [ $# -ge 2 ] || { echo "ERROR: $1 needs a value" >&2; usage >&2; exit 1; }
            declare "${1#--}=$2"; shift 2 ;;
        --release=*|--nj=*|--wav_cmd=*|--keep_archives=*)
            opt=${1%%=*}; declare "${opt#--}=${1#*=}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "ERROR: unknown option: $1" >&2; usage >&2; exit 1 ;;
    esac
done

# SHA-256 of the OpenSLR archives: the values torchaudio's TEDLIUM dataset class verifies
# (OpenSLR publishes no checksum for resources 19 and 51).
case "${release}" in
    2) top=TEDLIUM_release2; sets_root=TEDLIUM_release2; archive_name=TEDLIUM_release2.tar.gz
       default_url=https://www.openslr.org/resources/19
       sha256=93281b5fcaaae5c88671c9d000b443cb3c7ea3499ad12010b3934ca41a7b9c58 ;;
    3) top=TEDLIUM_release-3; sets_root=TEDLIUM_release-3/legacy; archive_name=TEDLIUM_release-3.tgz
       default_url=https://www.openslr.org/resources/51
       sha256=ad1e454d14d1ad550bc2564c462d87c7a7ec83d4dc2b9210f22ab4973b9eccdb ;;
    *) echo "ERROR: --release must be 2 or 3, got '${release}'" >&2; exit 1 ;;
esac
[[ "${nj}" =~ ^[1-9][0-9]*$ ]] || die "--nj must be a positive integer, got '${nj}'"
case "${keep_archives}" in true|false) ;; *) die "--keep_archives must be true or false" ;; esac

[ -f db.sh ] || die "db.sh not found in $(pwd); run this script from egs2/tedlium2/lw1"
. ./db.sh
[ -n "${TEDLIUM:-}" ] || die "db.sh: TEDLIUM is empty; set it to the directory that contains ${top}/"
base_url=${TEDLIUM_URL:-${default_url}}
offline_msg="download failed; put ${top} under \$TEDLIUM (db.sh) and re-run"

download() {  # download URL FILE: resumable (wget -c or curl -C -)
    local url=$1 out=$2
    if command -v wget >/dev/null; then
        wget -c --tries=3 --timeout=30 --no-verbose -O "${out}" "${url}"
    elif command -v curl >/dev/null; then
        curl -fL -C - --retry 3 --connect-timeout 30 -o "${out}" "${url}"
    else
        echo "neither wget nor curl is installed" >&2; return 1
    fi
}

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
    mkdir -p "${TEDLIUM}"
    archive="${TEDLIUM}/${archive_name}"
    sum=""
    [ -f "${archive}" ] && sum=$(sha256sum "${archive}" | cut -d' ' -f1)
    if [ "${sum}" != "${sha256}" ]; then
        log "downloading ${base_url}/${archive_name} -> ${archive}.part (resumable; release 2: 35 GB, release 3: 51 GB)"
        if [ -f "${archive}" ] && [ ! -f "${archive}.part" ]; then mv "${archive}" "${archive}.part"; fi
        download "${base_url}/${archive_name}" "${archive}.part" || die "${offline_msg} (${base_url}/${archive_name})"
        sum=$(sha256sum "${archive}.part" | cut -d' ' -f1)
        if [ "${sum}" != "${sha256}" ]; then
            mv "${archive}.part" "${archive}.bad"
            die "${archive}: sha256 ${sum} does not match ${sha256}; moved it to ${archive}.bad; remove it and re-run"
        fi
        mv "${archive}.part" "${archive}"
    fi
    log "checksum of ${archive} verified; extracting"
    tmp="${TEDLIUM}/.extract.${top}.tmp"
    rm -rf "${tmp}"; mkdir -p "${tmp}"
    tar -xzf "${archive}" -C "${tmp}" || die "cannot extract ${archive} (disk full?)"
    [ -d "${tmp}/${top}" ] || die "${archive} does not contain ${top}/"
    mv "${tmp}/${top}" "${TEDLIUM}/${top}"   # appears complete, or not at all
    rm -rf "${tmp}"
    [ "${keep_archives}" = true ] || rm -f "${archive}"
    corpus_present || die "${TEDLIUM}/${sets_root}/{train,dev,test}/{sph,stm} missing after extraction"
fi

log "Stage 2: Kaldi-style data directories (wav.scp via --wav_cmd ${wav_cmd})"
mkdir -p data
pids=()
for s in train dev test; do
    dst=data/${s}
    if [ -f "${dst}/wav.scp" ] && [ -f "${dst}/segments" ] && [ -f "${dst}/text" ] && [ -f "${dst}/utt2spk" ] \
        && [ -f "${dst}/spk2utt" ] && [ "$(cat "${dst}/.source" 2>/dev/null)" = "${sets_root}" ]; then
        log "${dst} is already complete; skipping (remove it to redo)"
        continue
    fi
    pad=""
    # ESPnet's TED-LIUM recipes widen train segments (its segmentation is tight)
    [ "${s}" = train ] && pad="--pad_start 0.15 --pad_end 0.1"
    # shellcheck disable=SC2086
    ( "${python}" -m espnet_lw.bin.prep_tedlium ${pad} --wav_cmd "${wav_cmd}" --overwrite \
        "${TEDLIUM}/${sets_root}/${s}" "${dst}" && echo "${sets_root}" > "${dst}/.source" ) &
    pids+=($!)
    while [ "$(jobs -rp | wc -l)" -ge "${nj}" ]; do sleep 0.2; done
done
for pid in ${pids[@]+"${pids[@]}"}; do wait "${pid}" || die "data preparation failed (see the messages above)"; done

log "Successfully finished. data: $(ls -d data/*/ | tr '\n' ' ')"
