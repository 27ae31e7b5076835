# Shell functions shared by the corpus recipes (egs2/<corpus>/lw1/run.sh and local/data.sh):
# logging, option parsing, background jobs, and fetching a corpus archive (resumable download,
# checksum, extraction into a temporary directory).  Sourced, never run:
#   run.sh:        . "$(dirname "$(readlink -f lw.sh)")/recipe_lib.sh"
#   local/data.sh: . "$(dirname "$(readlink -f "$(dirname "$0")/../lw.sh")")/recipe_lib.sh"
# (lw.sh is the recipe's link to the driver, which lives next to this file).
# Every function works under `set -euo pipefail`.

# The paper's setting, shared by the LibriSpeech and TED-LIUM recipes (run.sh adds the data sets):
# x3 speed perturbation, sentencepiece unigram 256 trained on the original training text,
# utterances up to 30 s, the 12-block Conformer reference (CTC only) on one GPU, greedy CTC decoding.
paper_lw_args() {  # paper_lw_args TRAIN_SET: sets the array `lw_args`
    lw_args=(
        --speed_perturb_factors "0.9 1.0 1.1"
        --token_type bpe --nbpe 256 --bpemode unigram
        --bpe_train_text "data/$1/text"
        --max_wav_duration 30
        --ngpu 1
        --asr_config conf/reference_paper.yaml
        --inference_config conf/decode_ctc_greedy.yaml
    )
}

# log MESSAGE: one time-stamped line on stdout, naming the calling script, line and function
log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

# die MESSAGE: the message on stderr, exit 1
die() { echo "ERROR: $*" >&2; exit 1; }

# parse_opts "NAME ..." ARG...: for every --NAME VALUE or --NAME=VALUE among ARG..., set the shell
# variable NAME to VALUE; every other argument is kept, in order, in the array `rest_args`.
parse_opts() {
    local _po_names=" $1 " _po_arg _po_name
    shift
    rest_args=()
    while [ $# -gt 0 ]; do
        _po_arg=$1
        _po_name=${_po_arg#--}
        _po_name=${_po_name%%=*}
        if [[ "${_po_arg}" == --* && "${_po_names}" == *" ${_po_name} "* ]]; then
            if [[ "${_po_arg}" == *=* ]]; then
                printf -v "${_po_name}" '%s' "${_po_arg#*=}"
                shift
            else
                [ $# -ge 2 ] || die "${_po_arg} needs a value"
                printf -v "${_po_name}" '%s' "$2"
                shift 2
            fi
        else
            rest_args+=("${_po_arg}")
            shift
        fi
    done
}

# parse_script_opts USAGE_FUNCTION "NAME ..." ARG...: parse_opts for a script that takes only
# these options: -h/--help prints the usage and exits 0, anything else is an error (with usage).
parse_script_opts() {
    local _ps_usage=$1 _ps_arg
    shift
    parse_opts "$@"
    for _ps_arg in ${rest_args[@]+"${rest_args[@]}"}; do
        case "${_ps_arg}" in
            -h|--help) "${_ps_usage}"; exit 0 ;;
            *) echo "ERROR: unknown option: ${_ps_arg}" >&2; "${_ps_usage}" >&2; exit 1 ;;
        esac
    done
}

# check_nj VALUE: stop unless VALUE is a positive integer (for --nj)
check_nj() { [[ "$1" =~ ^[1-9][0-9]*$ ]] || die "--nj must be a positive integer, got '$1'"; }

# check_bool NAME VALUE: stop unless VALUE is true or false
check_bool() { case "$2" in true|false) ;; *) die "--$1 must be true or false, got '$2'" ;; esac; }

# spawn NJ COMMAND...: run COMMAND in the background, waiting first while NJ jobs are running;
# wait_spawned then waits for all of them and stops when any failed.
spawned_pids=()
spawn() {
    local nj=$1
    shift
    while [ "$(jobs -rp | wc -l)" -ge "${nj}" ]; do sleep 0.2; done
    "$@" &
    spawned_pids+=($!)
}
wait_spawned() {  # wait_spawned WHAT: WHAT names the work in the error message
    local pid failed=false
    for pid in ${spawned_pids[@]+"${spawned_pids[@]}"}; do
        wait "${pid}" || failed=true
    done
    spawned_pids=()
    [ "${failed}" = false ] || die "$1 failed (see the messages above)"
}

# download URL FILE: resumable download (wget -c, or curl -C -) into FILE
download() {
    local url=$1 out=$2
    if command -v wget >/dev/null; then
        wget -c --tries=3 --timeout=30 --no-verbose -O "${out}" "${url}"
    elif command -v curl >/dev/null; then
        curl -fL -C - --retry 3 --connect-timeout 30 -o "${out}" "${url}"
    else
        echo "neither wget nor curl is installed" >&2
        return 1
    fi
}

# checksum ALGO FILE: print the md5 or sha256 of FILE
checksum() {
    case "$1" in
        md5) md5sum "$2" | cut -d' ' -f1 ;;
        sha256) sha256sum "$2" | cut -d' ' -f1 ;;
        *) die "checksum: unknown algorithm '$1' (md5 or sha256)" ;;
    esac
}

# fetch_archive URL ARCHIVE ALGO SUM OFFLINE_MESSAGE: make sure ARCHIVE exists and has checksum SUM.
# An ARCHIVE with the right checksum is kept as it is; otherwise URL is downloaded into
# ARCHIVE.part (an interrupted download resumes from there; a wrong ARCHIVE is moved there
# first), verified and renamed to ARCHIVE.  A failed download stops with OFFLINE_MESSAGE; a
# checksum mismatch moves the file to ARCHIVE.bad and stops.
fetch_archive() {
    local url=$1 archive=$2 algo=$3 want=$4 offline_msg=$5 got=""
    mkdir -p "$(dirname "${archive}")"
    [ -f "${archive}" ] && got=$(checksum "${algo}" "${archive}")
    if [ "${got}" != "${want}" ]; then
        log "downloading ${url} -> ${archive}.part (resumable)"
        if [ -f "${archive}" ] && [ ! -f "${archive}.part" ]; then mv "${archive}" "${archive}.part"; fi
        download "${url}" "${archive}.part" || die "${offline_msg} (${url})"
        got=$(checksum "${algo}" "${archive}.part")
        if [ "${got}" != "${want}" ]; then
            mv "${archive}.part" "${archive}.bad"
            die "${archive}: ${algo} ${got} does not match the published ${want}; moved it to ${archive}.bad; remove it and re-run (or use another mirror)"
        fi
        mv "${archive}.part" "${archive}"
    fi
    log "${algo} of ${archive} verified; extracting"
}

# extract_archive ARCHIVE TMPDIR: unpack the .tar.gz ARCHIVE into a fresh TMPDIR; the caller moves
# what it needs out of TMPDIR (so that a corpus directory appears complete or not at all), then
# calls finish_archive.
extract_archive() {
    local archive=$1 tmp=$2
    rm -rf "${tmp}"
    mkdir -p "${tmp}"
    tar -xzf "${archive}" -C "${tmp}" || die "cannot extract ${archive} (disk full?)"
}

# finish_archive ARCHIVE TMPDIR KEEP: remove TMPDIR, and ARCHIVE too unless KEEP is true
finish_archive() {
    rm -rf "$2"
    [ "$3" = true ] || rm -f "$1"
}
