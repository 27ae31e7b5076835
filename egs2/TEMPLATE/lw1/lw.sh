#!/usr/bin/env bash
# espnet-lw shared stage driver: one place for stages 1-13 of every lw1 recipe.
#
# Stage numbers and option names follow ESPnet's egs2/TEMPLATE/asr1/asr.sh so that an ESPnet user
# knows them already; the implementation is this project's own (python -m espnet_lw.bin.*).
# A recipe's run.sh sets corpus defaults and calls:  ./lw.sh [options] "$@"
#
# Every stage writes a marker (<dir>/.done.<name>) as its last act. A stage whose marker exists is
# skipped with a message, so re-running a range never silently redoes or overwrites finished work;
# pass --overwrite true to redo the selected stages (the old output is moved aside to *.old.<time>).
#
# The whole driver is one brace group ({ here ... } on the last line): bash parses it completely before
# running any of it, so editing or updating lw.sh while a run is in progress cannot break that run
# (bash otherwise reads a script piece by piece as it runs). New stages go above the closing brace.
{
set -euo pipefail

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (lw.sh:${BASH_LINENO[0]}) $*" >&2; }
die() { echo "ERROR: $*" >&2; exit 1; }

SECONDS=0
command_line="${LW_RUN_COMMAND:-$0 $*}"  # run.sh exports LW_RUN_COMMAND: the command the user typed

# ----------------------------------------------------------------------------------------- options
stage=1                 # first stage to run
stop_stage=13           # last stage to run
ngpu=0                  # number of GPUs for training (0: CPU)
nj=2                    # parallel jobs for data preparation / formatting / statistics
inference_nj=2          # parallel jobs for decoding
gpu_inference=false     # decode on a GPU
dumpdir=dump            # where formatted data go
expdir=exp              # where models, statistics and decodings go
overwrite=false         # redo stages whose .done marker exists (old output kept as *.old.<time>)
python=python3          # python interpreter
required_tools=sox,sclite  # checked before any stage runs (local/data.sh checks its own)

# data
local_data_opts=""      # options passed to local/data.sh
fs=16k                  # sampling rate of the audio (16k or 16000)
audio_format=flac       # format of the files written in stage 3 (flac or wav)
min_wav_duration=0.1    # stage 4: shorter utterances are dropped (seconds)
max_wav_duration=20     # stage 4: longer utterances are dropped (seconds)
max_eval_wav_duration=60  # stage 4: a dev/test utterance longer than this is an error (never dropped)
resample=false          # stage 3: resample audio whose rate differs from --fs (false: an error)
channel=""              # stage 3: 0-based channel kept from multi-channel audio (empty: multi-channel is an error)
speed_perturb_factors=""  # stage 2: e.g. "0.9 1.0 1.1"; empty skips speed perturbation

# tokens
token_type=bpe          # bpe or char
nbpe=256                # sentencepiece vocabulary size
bpemode=unigram         # sentencepiece model type: unigram or bpe
bpe_train_text=""       # text to train sentencepiece on (default: the training set's text)
bpe_char_cover=1.0      # sentencepiece character coverage
oov="<unk>"
blank="<blank>"
sos_eos="<sos/eos>"

# training (stage 11)
asr_config=conf/reference_mini.yaml  # ESPnet training config of the reference model
asr_tag=""              # name of the experiment dir (default: from the config file name)
asr_args=""             # extra arguments for espnet_lw.bin.asr_train (e.g. "--max_epoch 5")
asr_stats_dir=""        # default: ${expdir}/asr_stats_raw_<token_type>_<nbpe>
feats_normalize=global_mvn

# students (stage 11): see conf/student_r*.yaml
student_config=""       # e.g. conf/student_r67.yaml: train a student of the reference (decoded in 12-13)
student_mode=encrl      # encrl (EncRL + fine-tune) | baselines: scratch (random init) | pruned (reference blocks)
                        # | control (the EncRL student's init + the fine-tune's schedule, no EncRL) | kd (control + KL
                        # to the reference's CTC posteriors); every mode trains the same total epochs (conf/student_r*.yaml)
student_seed=""         # the trainer's seed of the student's trainings (default: the reference config's)
student_tag=""          # default: <student config name>_<student_mode>[_seed<student_seed>]
student_args=""         # extra arguments for the student's training runs (e.g. "--max_epoch 2")
ref_exp=""              # a trained reference exp dir (config.yaml + model); default: the one stage 11 trains
ref_model=""            # a pretrained ESPnet ASR model as the reference: packed .zip (espnet2.bin.pack), exp dir or config.yaml
ref_model_file=""       # with --ref_model config.yaml (or an exp dir): its model .pth
ref_cache=true          # EncRL: compute the reference's targets once and reuse them (kd always uses them)

# decoding (stage 12) and scoring (stage 13)
inference_config=conf/decode_ctc_greedy.yaml
inference_tag=""        # default: decode_<inference config name>_<model file>
inference_args=""       # extra arguments for espnet_lw.bin.asr_inference
inference_asr_model=valid.loss.ave.pth

# packing (stage 14) and ONNX export (stage 15)
export_parity_n=100     # stage 15: dev utterances decoded with torch, fp32 and int8 for the parity check (0: all)
export_precision=int8   # stage 15: the runtime's default precision: int8, fp32, or auto (int8 unless it costs
                        #           > 3 % relative WER against fp32 on the parity utterances)
export_args=""          # stage 15: more espnet_lw.bin.export_onnx options (e.g. --no_int8)

# field adaptation (stage 16): see conf/adapt*.yaml
adapt_set=""            # the field data to adapt on: a set under data/ (e.g. field_adapt)
adapt_config=conf/adapt.yaml  # epochs, lr, freeze, replay, noise (espnet_lw/adapt/config.py)
adapt_model=""          # the trained exp dir to adapt (default: the --student_config student, else the reference)
adapt_tag=""            # default: <model dir name>[_<adapt config suffix>]_<adapt set>; dir ${expdir}/adapt_<tag>
adapt_args=""           # extra arguments for the adaptation's espnet_lw.bin.asr_train run
adapt_test_sets="field_test test"  # decoded and scored with the adapted model (and compared with the original)

# sets
train_set=""
valid_set=""
test_sets=""
lang=en

help_message="Usage: $0 [options]

ESPnet-style ASR recipe driver of espnet-lw (stages follow egs2/TEMPLATE/asr1/asr.sh):
   1  data preparation (local/data.sh)        8  (LM)  skipped: CTC decoding without an LM
   2  speed perturbation                      9  (LM)  skipped
   3  format wav into \${dumpdir}/raw         10  feature statistics (global MVN)
   4  drop too long / too short utterances   11  training: reference, students
   5  token list (sentencepiece BPE)         12  decoding (CTC greedy / prefix beam)
 6-7  (LM)  skipped                          13  scoring with sclite, RESULTS.md
                                             14  packing (ESPnet's packer, model card): <exp>/packed/model.zip
                                             15  ONNX export fp32 + int8 + parity check: <exp>/onnx
                                             16  field adaptation (--adapt_set): <expdir>/adapt_<tag>

Options (default in brackets):
  --stage N --stop_stage N     run stages N..M [${stage}..${stop_stage}]
  --ngpu N                     GPUs for training; N > 1: DDP, one process per GPU (the targets dump: one job
                               per GPU); N CPU processes instead: --asr_args/--student_args \"--cpu_procs N\" [${ngpu}]
  --nj N --inference_nj N      parallel jobs [${nj}, ${inference_nj}]
  --gpu_inference BOOL         decode on GPU [${gpu_inference}]
  --dumpdir DIR --expdir DIR   output dirs [${dumpdir}, ${expdir}]
  --overwrite BOOL             redo finished stages, keeping old output aside [${overwrite}]
                               (with --student_config: the student only, not the reference)
  --local_data_opts STR        options for local/data.sh [${local_data_opts}]
  --fs RATE --audio_format FMT [${fs}, ${audio_format}]
  --min_wav_duration S --max_wav_duration S   [${min_wav_duration}, ${max_wav_duration}]
  --max_eval_wav_duration S    stage 4: longer dev/test utterances are an error [${max_eval_wav_duration}]
  --resample BOOL --channel N  stage 3: resample to --fs; keep channel N of multi-channel audio [${resample}, none]
  --speed_perturb_factors STR  e.g. \"0.9 1.0 1.1\" [${speed_perturb_factors}]
  --token_type bpe|char --nbpe N --bpemode unigram|bpe --bpe_train_text FILE
  --asr_config YAML --asr_tag NAME --asr_args STR
  --student_config YAML       train a student of the reference in stage 11, decode it in 12-13
  --student_mode encrl|scratch|pruned|control|kd --student_seed N --student_tag NAME --student_args STR
  --ref_exp DIR                a trained reference (config.yaml + model) instead of training one
  --ref_model PATH             a pretrained ESPnet ASR model as the reference, no reference training: a .zip
                               packed by espnet2.bin.pack, an exp dir, or a config.yaml with --ref_model_file
                               X.pth; checked against the recipe (tokens, --fs, frontend, normalisation) and
                               imported into <expdir>/asr_ref_pretrained
  --ref_cache BOOL             EncRL: reuse the reference's targets computed once [${ref_cache}] (kd: always)
  --inference_config YAML --inference_tag NAME --inference_args STR
  --inference_asr_model FILE   model file in the experiment dir [${inference_asr_model}]
  --export_parity_n N          stage 15: dev utterances in the parity check (0: all) [${export_parity_n}]
  --export_precision P         stage 15: the runtime's default precision: int8, fp32 or auto [${export_precision}]
  --export_args STR            stage 15: more options for espnet_lw.bin.export_onnx
  --adapt_set NAME             stage 16: fine-tune a trained model on this set under data/ (e.g. field_adapt)
  --adapt_config YAML          stage 16: epochs, lr, freeze, replay, noise [${adapt_config}]
  --adapt_model DIR            stage 16: the exp dir to adapt [the --student_config student, else the reference]
  --adapt_tag NAME --adapt_args STR   stage 16: exp dir <expdir>/adapt_<tag>; more trainer options
  --adapt_test_sets \"A B\"      stage 16: sets decoded before/after [${adapt_test_sets}]
  --train_set NAME --valid_set NAME --test_sets \"A B\"
  --python EXE                 python interpreter [${python}]
"

# Parse --name value pairs into the variables above; unknown options are an error.
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) echo "${help_message}"; exit 0 ;;
        --*=*) name="${1%%=*}"; value="${1#*=}"; shift ;;
        --*)
            name="$1"
            [ $# -ge 2 ] || die "option ${name} needs a value (see $0 --help)"
            value="$2"; shift 2 ;;
        *) die "unexpected argument '$1' (options look like --name value; see $0 --help)" ;;
    esac
    var="${name#--}"; var="${var//-/_}"
    if ! [[ "${var}" =~ ^[a-z][a-z0-9_]*$ ]] || ! declare -p "${var}" >/dev/null 2>&1 \
        || [[ " help_message command_line name value var " == *" ${var} "* ]]; then
        die "unknown option ${name} (see $0 --help)"
    fi
    printf -v "${var}" '%s' "${value}"
done

[ -n "${train_set}" ] || die "--train_set is required"
[ -n "${valid_set}" ] || die "--valid_set is required"
[ -n "${test_sets}" ] || die "--test_sets is required"
# Every option that reaches shell arithmetic, a path or a command line is checked here, before any work:
# a value like --fs 'x[$(cmd)]' must never reach $(( )), and a set name is a directory name.
check_int() {  # check_int NAME VALUE [MIN]: VALUE is a whole number >= MIN (default 0)
    [[ "$2" =~ ^[0-9]{1,9}$ ]] && [ "$((10#$2))" -ge "${3:-0}" ] || die "--$1 must be a whole number >= ${3:-0}, got '$2'"
}
check_number() { [[ "$2" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--$1 must be a number like 0.5, got '$2'"; }
check_choice() {  # check_choice NAME VALUE CHOICE...
    local name="$1" value="$2"; shift 2
    [[ " $* " == *" ${value} "* ]] || die "--${name} must be one of: $*; got '${value}'"
}
check_int stage "${stage}"; check_int stop_stage "${stop_stage}"
check_int ngpu "${ngpu}"; check_int nj "${nj}" 1; check_int inference_nj "${inference_nj}" 1
check_int nbpe "${nbpe}" 1; check_int export_parity_n "${export_parity_n}"
check_number min_wav_duration "${min_wav_duration}"; check_number max_wav_duration "${max_wav_duration}"
check_number max_eval_wav_duration "${max_eval_wav_duration}"; check_choice resample "${resample}" true false
[ -z "${channel}" ] || check_int channel "${channel}"
check_number bpe_char_cover "${bpe_char_cover}"
[ -z "${student_seed:-}" ] || check_int student_seed "${student_seed}"
for _b in overwrite gpu_inference ref_cache; do check_choice "${_b}" "${!_b}" true false; done
check_choice token_type "${token_type}" bpe char
check_choice bpemode "${bpemode}" unigram bpe
check_choice audio_format "${audio_format}" flac wav
[[ "${fs}" =~ ^[1-9][0-9]{0,6}k?$ ]] || die "--fs must be a sampling rate like 16k or 16000, got '${fs}'"
adapt_set="${adapt_set#data/}"; adapt_set="${adapt_set%/}"  # data/field_adapt or field_adapt
for _s in "${train_set}" "${valid_set}" ${test_sets} ${adapt_set} ${adapt_test_sets}; do
    [[ "${_s}" =~ ^[A-Za-z0-9_.+-]+$ ]] || die "data set names are directory names (letters, digits, _ . + -), got '${_s}'"
done

# sampling rate as an integer
case "${fs}" in *k) fs_int=$(( 10#${fs%k} * 1000 )) ;; *) fs_int=$(( 10#${fs} )) ;; esac

# ----------------------------------------------------------------------------------------- names
data_feats="${dumpdir}/raw"
if [ "${token_type}" = bpe ]; then
    token_dir="data/token_list/bpe_${bpemode}${nbpe}"
    bpemodel="${token_dir}/bpe.model"
    token_suffix="bpe"
else
    token_dir="data/token_list/char"
    bpemodel=none
    token_suffix="char"
fi
token_list="${token_dir}/tokens.txt"
token_tag="${token_type}"
[ "${token_type}" != bpe ] || token_tag="bpe${nbpe}"
[ -n "${asr_stats_dir}" ] || asr_stats_dir="${expdir}/asr_stats_raw_${token_tag}"
[ -n "${asr_tag}" ] || asr_tag="$(basename "${asr_config}" .yaml)_raw_${token_tag}"
if [ -n "${ref_model}" ]; then
    [ -z "${ref_exp}" ] || die "give --ref_model or --ref_exp, not both"
    ref_exp="${expdir}/asr_ref_pretrained"
fi
[ -n "${ref_exp}" ] || ref_exp="${expdir}/asr_${asr_tag}"
check_choice student_mode "${student_mode}" encrl scratch pruned control kd
[ -z "${student_seed}" ] || check_int student_seed "${student_seed}"
if [ -n "${student_config}" ]; then
    [ -n "${student_tag}" ] || student_tag="$(basename "${student_config}" .yaml)_${student_mode}${student_seed:+_seed${student_seed}}"
    student_exp="${expdir}/asr_${student_tag}"
    asr_exp="${student_exp}"     # the model stages 12-13 decode and score
else
    asr_exp="${ref_exp}"
fi
if [ -z "${inference_tag}" ]; then
    _conf_name="$(basename "${inference_config}" .yaml)"
    inference_tag="decode_${_conf_name#decode_}_asr_model_${inference_asr_model%.*}"
fi
if [ -n "${speed_perturb_factors}" ]; then
    train_set_sp="${train_set}_sp"
else
    train_set_sp="${train_set}"
fi
stage_times="${expdir}/stage_times.tsv"
mkdir -p "${expdir}"

# ----------------------------------------------------------------------------------------- one run per exp dir
# ${expdir}/.lock is held (flock) for the whole run and names its holder (pid, host, command): a second run on
# the same exp dir stops at once. A holder killed without cleaning up (SIGKILL, a crash) leaves its line
# behind; the lock itself went with its processes, so the next run takes over with a warning. Without flock
# (e.g. macOS) the holder's pid is checked instead.
lock_file="${expdir}/.lock"
lock_pid() { sed -n 's/^pid=\([0-9]*\) .*/\1/p' "${lock_file}" 2>/dev/null | head -n 1; }
lock_host() { sed -n 's/^pid=[0-9]* host=\([^ ]*\) .*/\1/p' "${lock_file}" 2>/dev/null | head -n 1; }
lock_refuse() {  # lock_refuse REASON
    die "${expdir} is in use by another lw.sh run ($1): $(head -n 1 "${lock_file}" 2>/dev/null)
    Wait for it to finish or stop it (kill $(lock_pid)); two runs in one exp dir would overwrite each other.
    If no such run exists (its host crashed, or the file system has no working locks), remove ${lock_file} and re-run."
}
acquire_lock() {
    local holder_pid holder_host this_host
    this_host="$(hostname 2>/dev/null || uname -n 2>/dev/null || echo unknown)"
    exec {lock_fd}>>"${lock_file}"
    if command -v flock >/dev/null 2>&1; then
        if ! flock -n "${lock_fd}"; then
            holder_pid="$(lock_pid)"
            if [ -n "${holder_pid}" ] && [ "$(lock_host)" = "${this_host}" ] && ! kill -0 "${holder_pid}" 2>/dev/null; then
                lock_refuse "pid ${holder_pid} has ended, but a process it started still holds the lock"
            fi
            lock_refuse "it holds ${lock_file}"
        fi
    elif [ -s "${lock_file}" ]; then
        holder_pid="$(lock_pid)"; holder_host="$(lock_host)"
        if [ "${holder_host}" != "${this_host}" ] || kill -0 "${holder_pid:-0}" 2>/dev/null; then
            lock_refuse "pid ${holder_pid} on ${holder_host}"
        fi
    fi
    if [ -s "${lock_file}" ]; then
        log "WARNING: taking over a stale lock: the run that held ${lock_file} ended without releasing it" \
            "(killed?): $(head -n 1 "${lock_file}")"
    fi
    printf 'pid=%s host=%s started=%s command=%s\n' "$$" "${this_host}" "$(date '+%Y-%m-%dT%H:%M:%S')" \
        "${command_line}" > "${lock_file}"
    lock_held=true
}
lock_held=false
release_lock() { [ "${lock_held}" = false ] || : > "${lock_file}"; }  # emptied, not removed: flock holds its inode

# Ctrl-C, SIGTERM and the end of lw.sh stop every process this run started, background trainers included
# (a background job of a non-interactive bash ignores SIGINT, so Ctrl-C alone would leave it running).
descendant_pids() {  # the pids of every process below this shell
    ps -A -o pid= -o ppid= 2>/dev/null | awk -v root="$$" '
        { parent[$1] = $2 }
        END {
            keep[root] = 1
            do { grew = 0; for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; grew = 1 } } while (grew)
            for (p in keep) if (p != root) print p
        }' 2>/dev/null || true
}
stop_children() {  # SIGTERM to the whole tree, SIGKILL to what is left after 5 s
    local pids alive p n=0
    pids="$(descendant_pids)"
    [ -n "${pids}" ] || return 0
    # shellcheck disable=SC2086
    kill -TERM ${pids} 2>/dev/null || true
    while [ "$(( n += 1 ))" -le 50 ]; do
        alive=""
        for p in ${pids}; do kill -0 "${p}" 2>/dev/null && alive="${alive} ${p}"; done
        [ -n "${alive}" ] || return 0
        sleep 0.1
    done
    # shellcheck disable=SC2086
    kill -KILL ${alive} 2>/dev/null || true
}
on_signal() {  # on_signal NAME EXIT_CODE
    trap - INT TERM
    log "interrupted (SIG$1): stopping the processes this run started; re-run the same command to resume"
    stop_children
    exit "$2"
}
on_exit() { stop_children; release_lock; }
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM
trap on_exit EXIT
acquire_lock

# ----------------------------------------------------------------------------------------- helpers
run_stage() {  # run_stage N "description": true when stage N is selected
    [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ]
}

is_done() {  # is_done MARKER: true when the marker exists and --overwrite is false
    [ -e "$1" ] && [ "${overwrite}" = false ]
}

move_aside() {  # move_aside PATH: keep old output when --overwrite true redoes a stage
    if [ -e "$1" ]; then
        local dst
        dst="$1.old.$(date +%Y%m%d%H%M%S)"
        mv "$1" "${dst}"
        log "kept the previous output as ${dst}"
    fi
}

# begin N "description" ... finish STATUS [SECONDS]: one row of ${stage_times} (RESULTS.md's stage table)
stage_start=0
stage_no=""
stage_desc=""
begin() { stage_start=${SECONDS}; stage_no="$1"; stage_desc="$2"; log "Stage $1: $2"; }
finish() {  # finish done|skipped [seconds; default: since begin]
    local secs=$(( SECONDS - stage_start ))
    [ $# -lt 2 ] || secs="$2"
    printf '%s\t%s\t%s\t%s\n' "${stage_no}" "${stage_desc}" "${secs}" "$1" >> "${stage_times}"
    log "Stage ${stage_no} $1 in ${secs}s"
}

# Options records: what shaped a step's output, one "name=value" a line, written into the step's marker under
# a first line "hash=<sha256 of the rest>". A marker whose hash differs from the present options' is never
# silently reused: --overwrite true redoes the step, otherwise lw.sh stops and names the changed options.
hash_stdin() { { command -v sha256sum >/dev/null && sha256sum; } || shasum -a 256; }
file_hash() {  # file_hash PATH: the sha256 of a file's content (first 16 hex digits), "none" when missing
    if [ -f "$1" ]; then hash_stdin < "$1" | cut -c1-16; else echo none; fi
}
options_record() {  # options_record "name=value..." -> the marker text
    printf 'hash=%s\n%s\n' "$(printf '%s\n' "$1" | hash_stdin | cut -c1-16)" "$1"
}
options_diff() {  # options_diff MARKER RECORD: the changed options ("" when none, or when MARKER records none)
    [ -s "$1" ] || return 0  # a marker of an older lw.sh: no options recorded
    [ "$(head -n 1 "$1")" != "$(printf '%s\n' "$2" | head -n 1)" ] || return 0
    printf '%s\n' "$2" | awk 'NR == FNR { if (NR > 1) { i = index($0, "="); old[substr($0, 1, i - 1)] = substr($0, i + 1) }; next }
        FNR > 1 { i = index($0, "="); k = substr($0, 1, i - 1); v = substr($0, i + 1); seen[k] = 1
                  if (!(k in old)) d = d sep k ": (not recorded) -> " v; else if (old[k] != v) d = d sep k ": " old[k] " -> " v
                  if (d != "") sep = "; " }
        END { for (k in old) if (!(k in seen)) d = d sep k ": " old[k] " -> (not used)"; print d }' "$1" -
}

# run_step MARKER OUTPUT "what" COMMAND [ARGS...]: the resumable unit every stage is made of.
# Skipped when MARKER exists with the same options (step_opts, see above); otherwise OUTPUT (when given) is
# moved aside under --overwrite true, COMMAND runs, and MARKER, with the options, is written as the last act.
# Set right before the call (both are reset by it):
#   step_opts="name=value..."  the options that shape OUTPUT
#   step_kind=tmp      COMMAND writes OUTPUT.tmp (every argument equal to OUTPUT is replaced by it), which is
#                      renamed to OUTPUT, marker inside, only when COMMAND succeeded: no reader ever sees half of it
#             fresh    COMMAND makes OUTPUT itself, atomically, refusing an existing one: an OUTPUT without
#                      marker (a kill between its rename and the marker) is moved to OUTPUT.incomplete first
#             resume   COMMAND resumes from what OUTPUT holds (training): the options are also written to
#                      OUTPUT/.options.<marker name> at the start, and a resume with other options is refused
#             ""       (default) none of the above
# COMMAND runs in the background and is waited for, so that Ctrl-C / SIGTERM reach lw.sh's trap at once.
# It ignores SIGINT (a background subshell that runs a shell function would otherwise die of Ctrl-C and
# orphan its trainer before the trap can find it): lw.sh's trap stops it and everything below it.
# Sets step_status to done or skipped. Call it as a plain command (not inside if/||): a failing COMMAND stops lw.sh.
step_status=""
step_opts=""
step_kind=""
run_step() {
    local marker="$1" output="$2" what="$3"; shift 3
    local record kind="${step_kind}" changed started arg args=()
    record="$(options_record "${step_opts}")"
    step_opts=""; step_kind=""
    if [ -e "${marker}" ]; then
        changed="$(options_diff "${marker}" "${record}")"
        if [ "${overwrite}" = false ]; then
            [ -z "${changed}" ] || die "${what}, but made with other options than now: ${changed}
    --overwrite true redoes it (the old output is kept as *.old.<time>); or run with the options it was made with."
            log "${what}: skipped (${marker} exists; --overwrite true redoes it)"
            step_status=skipped
            return 0
        fi
    fi
    [ "${overwrite}" = true ] && [ -n "${output}" ] && move_aside "${output}"
    if [ "${kind}" = resume ]; then
        started="${output}/.options.${marker##*/.done.}"
        if [ -s "${started}" ] && [ "$(head -n 1 "${started}")" != "$(printf '%s\n' "${record}" | head -n 1)" ]; then
            die "${what%%:*}: ${output} holds an unfinished run made with other options than now: $(options_diff "${started}" "${record}")
    --overwrite true starts it afresh (the old one is kept as *.old.<time>); or resume with the options it was started with."
        fi
        mkdir -p "${output}"
        printf '%s\n' "${record}" > "${started}"
    elif [ "${kind}" = fresh ] || [ "${kind}" = tmp ]; then
        if [ -e "${output}" ]; then  # no marker: left by a run killed before it finished
            rm -rf "${output}.incomplete"
            mv "${output}" "${output}.incomplete"
            log "${output} was left unfinished by an interrupted run: moved to ${output}.incomplete; redoing it"
        fi
    fi
    if [ "${kind}" = tmp ]; then
        rm -rf "${output}.tmp"
        for arg in "$@"; do
            if [ "${arg}" = "${output}" ]; then args+=("${output}.tmp"); else args+=("${arg}"); fi
        done
        ( trap '' INT; "${args[@]}" ) &
        wait "$!"
        mkdir -p "${output}.tmp/$(dirname "${marker#"${output}"/}")"
        printf '%s\n' "${record}" > "${output}.tmp/${marker#"${output}"/}"
        mv "${output}.tmp" "${output}"
    else
        ( trap '' INT; "$@" ) &
        wait "$!"
        mkdir -p "$(dirname "${marker}")"
        printf '%s\n' "${record}" > "${marker}.tmp"
        mv "${marker}.tmp" "${marker}"
    fi
    step_status=done
}

# ----------------------------------------------------------------------------------------- stages
# Fail early, before any work, when a system tool or Python package is missing.
${python} -m espnet_lw.bin.check_tools --need "${required_tools}" || die "install the missing tools above, then re-run"

prepare_data() {
    [ -x local/data.sh ] || die "local/data.sh not found or not executable in $(pwd)"
    # shellcheck disable=SC2086
    local/data.sh ${local_data_opts}
    local dset
    ${python} -m espnet_lw.bin.validate_data_dir "data/${train_set}"
    for dset in "${valid_set}" ${test_sets}; do  # transcripts in the training set's case (scoring is case-sensitive)
        ${python} -m espnet_lw.bin.validate_data_dir --same_case_as "data/${train_set}" "data/${dset}"
    done
}

if run_stage 1; then
    begin 1 "data preparation"
    step_opts="local_data_opts=${local_data_opts}"
    run_step data/.done.stage1 "" "stage 1: data/ already prepared" prepare_data
    finish "${step_status}"
fi

if run_stage 2; then
    begin 2 "speed perturbation"
    if [ -z "${speed_perturb_factors}" ]; then
        log "stage 2: no --speed_perturb_factors: skipped"
        step_status=skipped
    else
        step_opts="speed_perturb_factors=${speed_perturb_factors}
source wav.scp=$(file_hash "data/${train_set}/wav.scp")"
        step_kind=fresh
        run_step "data/${train_set_sp}/.done.stage2" "data/${train_set_sp}" "stage 2: data/${train_set_sp} already made" \
            ${python} -m espnet_lw.bin.speed_perturb --factors "${speed_perturb_factors}" \
            "data/${train_set}" "data/${train_set_sp}"
    fi
    finish "${step_status}"
fi

format_set() {  # format_set DSET DST
    [ -d "data/$1" ] || die "data/$1 does not exist: run stage 1 (and 2) first"
    local channel_args=()
    [ -z "${channel}" ] || channel_args=(--channel "${channel}")
    ${python} -m espnet_lw.bin.format_wav_scp --fs "${fs_int}" --audio_format "${audio_format}" \
        --resample "${resample}" "${channel_args[@]}" --nj "${nj}" "data/$1" "$2"
}

# format_step DSET DST WHAT: format data/DSET into DST as one resumable step whose marker records the
# audio options and the source lists (stages 3, 16).
format_step() {
    step_opts="fs=${fs_int}
audio_format=${audio_format}
source wav.scp=$(file_hash "data/$1/wav.scp")
source text=$(file_hash "data/$1/text")
source segments=$(file_hash "data/$1/segments")"
    step_kind=fresh
    run_step "$2/.done.stage3" "$2" "$3: $2 already formatted" format_set "$1" "$2"
}

if run_stage 3; then
    begin 3 "format wav into ${data_feats}"
    status=skipped  # "done" once any set is formatted by this run
    for dset in "${train_set_sp}" "${valid_set}" ${test_sets}; do
        if [ "${dset}" = "${train_set_sp}" ]; then dst="${data_feats}/org/${dset}"; else dst="${data_feats}/${dset}"; fi
        format_step "${dset}" "${dst}" "stage 3"
        [ "${step_status}" = skipped ] || status=done
    done
    finish "${status}"
fi

filter_train_set() {  # filter_train_set DST
    [ -d "${data_feats}/org/${train_set_sp}" ] || die "${data_feats}/org/${train_set_sp} does not exist: run stage 3 first"
    ${python} -m espnet_lw.bin.filter_data_dir --fs "${fs_int}" \
        --min_wav_duration "${min_wav_duration}" --max_wav_duration "${max_wav_duration}" \
        "${data_feats}/org/${train_set_sp}" "$1"
    # dev/test sets are never filtered (that would change what is scored): an over-long utterance is an error
    local dset eval_dirs=()
    for dset in "${valid_set}" ${test_sets}; do eval_dirs+=("${data_feats}/${dset}"); done
    ${python} -m espnet_lw.bin.filter_data_dir --check_only --fs "${fs_int}" \
        --max_wav_duration "${max_eval_wav_duration}" "${eval_dirs[@]}"
}

filter_opts() {  # filter_opts SRC: the options record of filtering the formatted dir SRC (stages 4, 16a)
    printf '%s\n' "min_wav_duration=${min_wav_duration}" "max_wav_duration=${max_wav_duration}" \
        "source wav.scp=$(file_hash "$1/wav.scp")" "source text=$(file_hash "$1/text")"
}

if run_stage 4; then
    begin 4 "remove utterances shorter than ${min_wav_duration}s / longer than ${max_wav_duration}s or without text"
    dst="${data_feats}/${train_set_sp}"
    step_opts="$(filter_opts "${data_feats}/org/${train_set_sp}")"
    step_kind=fresh
    run_step "${dst}/.done.stage4" "${dst}" "stage 4: ${dst} already filtered" filter_train_set "${dst}"
    finish "${step_status}"
fi

make_tokens() {  # make_tokens OUT_DIR
    [ -s "${bpe_train_text}" ] || die "${bpe_train_text} is missing or empty: run stages 1-4 first"
    ${python} -m espnet_lw.bin.make_token_list --token_type "${token_type}" --nbpe "${nbpe}" \
        --bpemode "${bpemode}" --character_coverage "${bpe_char_cover}" \
        --oov "${oov}" --blank "${blank}" --sos_eos "${sos_eos}" \
        --text "${bpe_train_text}" --out_dir "$1"
}

if run_stage 5; then
    begin 5 "token list (${token_type})"
    [ -n "${bpe_train_text}" ] || bpe_train_text="${data_feats}/${train_set_sp}/text"
    step_opts="token_type=${token_type}
oov=${oov}
blank=${blank}
sos_eos=${sos_eos}
train text=$(file_hash "${bpe_train_text}")"
    [ "${token_type}" != bpe ] || step_opts="${step_opts}
nbpe=${nbpe}
bpemode=${bpemode}
bpe_char_cover=${bpe_char_cover}
bpe_train_text=${bpe_train_text}"
    step_kind=tmp
    run_step "${token_dir}/.done.stage5" "${token_dir}" "stage 5: ${token_list} already exists" make_tokens "${token_dir}"
    finish "${step_status}"
fi

for n in 6 7 8 9; do
    if run_stage "${n}"; then
        begin "${n}" "language model (not used)"
        log "stage ${n}: skipped: this recipe decodes CTC without a language model"
        finish skipped
    fi
done

# Arguments shared by statistics collection and training (an array: paths may hold spaces).
common_train_args=(--use_preprocessor true --token_type "${token_type}" --token_list "${token_list}"
    --bpemodel "${bpemodel}" --non_linguistic_symbols none --cleaner none --g2p none
    --train_data_path_and_name_and_type "${data_feats}/${train_set_sp}/wav.scp,speech,sound"
    --train_data_path_and_name_and_type "${data_feats}/${train_set_sp}/text,text,text"
    --valid_data_path_and_name_and_type "${data_feats}/${valid_set}/wav.scp,speech,sound"
    --valid_data_path_and_name_and_type "${data_feats}/${valid_set}/text,text,text")

collect_stats() {  # collect_stats OUT_DIR
    [ -f "${token_list}" ] || die "${token_list} does not exist: run stage 5 first"
    [ -f "${asr_config}" ] || die "${asr_config}: no such config (see conf/ for the shipped ones)"
    # shellcheck disable=SC2086
    ${python} -m espnet_lw.bin.collect_stats --nj "${nj}" --output_dir "$1" \
        --config "${asr_config}" "${common_train_args[@]}" ${asr_args}
}

if run_stage 10; then
    begin 10 "feature statistics for ${feats_normalize}"
    step_opts="asr_config=${asr_config} ($(file_hash "${asr_config}"))
asr_args=${asr_args}
token list=$(file_hash "${token_list}")
train wav.scp=$(file_hash "${data_feats}/${train_set_sp}/wav.scp")
train text=$(file_hash "${data_feats}/${train_set_sp}/text")
valid wav.scp=$(file_hash "${data_feats}/${valid_set}/wav.scp")
valid text=$(file_hash "${data_feats}/${valid_set}/text")"
    step_kind=tmp
    run_step "${asr_stats_dir}/.done.stage10" "${asr_stats_dir}" "stage 10: ${asr_stats_dir} already has statistics" \
        collect_stats "${asr_stats_dir}"
    finish "${step_status}"
fi

# train_model DIR CONFIG [extra trainer args...]: one resumable training run with ESPnet's trainer.
# Skipped when DIR/.done.stage11 exists; the full log goes to DIR/train.log, one line per epoch
# to the console; DIR/params.txt gets the model size (written by the trainer's process: --params_report).
train_model() {
    local dir="$1"
    begin 11 "training ${dir}"
    # what shapes the model (not --ngpu: a resume on other devices is the same training)
    step_opts="config=$2 ($(file_hash "$2"))
trainer args=$(printf '%q ' "${@:3}")
fs=${fs}
feats_normalize=${feats_normalize}
statistics=$(file_hash "${asr_stats_dir}/train/feats_stats.npz")
token list=$(file_hash "${token_list}")
train wav.scp=$(file_hash "${data_feats}/${train_set_sp}/wav.scp")
train text=$(file_hash "${data_feats}/${train_set_sp}/text")"
    step_kind=resume
    run_step "${dir}/.done.stage11" "${dir}" "stage 11: ${dir} is trained" _train_model "$@"
    if [ "${step_status}" = done ]; then
        # count every epoch, also those of an earlier, interrupted invocation (resume)
        finish done "$(${python} -m espnet_lw.bin.train_time "${dir}/train.log" --wall $(( SECONDS - stage_start )))"
    else
        finish skipped
    fi
}

# check_training DIR LOG_START: a training that ESPnet ended "successfully" but that diverged or learnt nothing
# fails its stage (no .done marker): judged from DIR/train.log past byte LOG_START (this invocation's part)
check_training() {
    local dir="$1" new_log
    new_log="$(tail -c +"$(( $2 + 1 ))" "${dir}/train.log")"
    if grep -q "gradients at all steps are invalid" <<< "${new_log}"; then
        die "training diverged: ESPnet stopped it because the gradients at all steps of an epoch were invalid (inf/NaN):
$(grep -m 1 "gradients at all steps are invalid" <<< "${new_log}")
    Lower the learning rate (optim_conf.lr) or raise the warm-up, then re-run with --overwrite true (see ${dir}/train.log)."
    fi
    if grep -Eq 'epoch results: .*[ ,]loss=-?(nan|inf)' <<< "${new_log}"; then
        die "training diverged: the loss became NaN/inf:
$(grep -E -m 1 'epoch results: .*[ ,]loss=-?(nan|inf)' <<< "${new_log}" | cut -c1-400)
    Lower the learning rate (optim_conf.lr) or raise the warm-up, then re-run with --overwrite true (see ${dir}/train.log)."
    fi
    [ -f "${dir}/checkpoint.pth" ] || die "training ended without a checkpoint (${dir}/checkpoint.pth): no epoch finished
    (no training data? --max_epoch 0?); see ${dir}/train.log"
    [ -f "${dir}/${inference_asr_model}" ] || die "training ended without ${dir}/${inference_asr_model}: see ${dir}/train.log"
}

# run_trainer DIR WHAT ARGS...: ESPnet's trainer (espnet_lw.bin.asr_train ARGS...) for the model dir DIR.
# The full log is appended to DIR/train.log and one line per epoch goes to the console (the trainer and
# the tail run in the background, so that a signal reaches lw.sh's trap at once; tail ends with the
# trainer). The stage fails when the trainer fails ("WHAT failed"), diverges or leaves no checkpoint.
run_trainer() {
    local dir="$1" what="$2"; shift 2
    local log_start=0 rc=0
    [ ! -f "${dir}/train.log" ] || log_start=$(wc -c < "${dir}/train.log")
    # shellcheck disable=SC2086
    ${python} -m espnet_lw.bin.asr_train "$@" >> "${dir}/train.log" 2>&1 &
    local train_pid=$!
    tail -n 0 -F --pid="${train_pid}" "${dir}/train.log" 2>/dev/null \
        | grep --line-buffered -E "epoch results|ERROR|Traceback|Error:" >&2 &
    local tail_pid=$!
    wait "${train_pid}" || rc=$?
    wait "${tail_pid}" || true
    [ "${rc}" -eq 0 ] || die "${what} failed (exit ${rc}): see ${dir}/train.log; last lines:
$(tail -n 15 "${dir}/train.log")"
    check_training "${dir}" "${log_start}"
}

_train_model() {  # the body of train_model
    local dir="$1" config="$2"; shift 2
    [ -f "${asr_stats_dir}/train/feats_stats.npz" ] || die "${asr_stats_dir}/train/feats_stats.npz missing: run stage 10 first"
    [ -f "${config}" ] || die "${config}: no such config (see conf/ for the shipped ones)"
    mkdir -p "${dir}"
    log "training log: ${dir}/train.log (resumes from ${dir}/checkpoint.pth if present)"
    run_trainer "${dir}" training --config "${config}" --output_dir "${dir}" \
        --ngpu "${ngpu}" --resume true --params_report "${dir}/params.txt" \
        --frontend_conf fs="${fs}" \
        --normalize "${feats_normalize}" --normalize_conf stats_file="${asr_stats_dir}/train/feats_stats.npz" \
        --train_shape_file "${asr_stats_dir}/train/speech_shape" \
        --train_shape_file "${asr_stats_dir}/train/text_shape.${token_suffix}" \
        --valid_shape_file "${asr_stats_dir}/valid/speech_shape" \
        --valid_shape_file "${asr_stats_dir}/valid/text_shape.${token_suffix}" \
        "${common_train_args[@]}" "$@"
    printf '%s\n' "${command_line}" > "${dir}/run_command.txt"  # RESULTS.md names it in the model's section
}

# ------------------------------------------------------------------------- stage 11 steps
# What --overwrite true redoes in stage 11 (each step below states its own part once):
#   no --student_config: the reference: imported again (--ref_model) or moved aside and trained again;
#   --student_config:    the student only: its dir is moved aside once, before its configs are written, and
#                        every training inside it then starts afresh; a trained reference is used as is and
#                        the reference targets cache is never redone.

# The reference every student learns from, as dump_reference_targets, make_student_configs and init_student take it.
ref_args=(--reference_config "${ref_exp}/config.yaml" --reference_model "${ref_exp}/${inference_asr_model}")
ref_targets="${ref_exp}/targets/${train_set_sp}"  # EncRL: the reference's targets of the training set

import_reference_step() {  # 11a with --ref_model: check a pretrained model against the recipe, import it into ${ref_exp}
    # import_reference skips an import that is already there and unchanged; --overwrite true imports it again,
    # unless a student is trained: its reference (and the targets cache inside it) is never redone.
    # A mismatch stops here, before any training.
    begin 11 "importing the reference ${ref_model}"
    local ref_file_args=() ref_status ref_overwrite="${overwrite}"
    [ -z "${student_config}" ] || ref_overwrite=false
    [ -z "${ref_model_file}" ] || ref_file_args=(--ref_model_file "${ref_model_file}")
    ref_status=$(${python} -m espnet_lw.bin.import_reference --ref_model "${ref_model}" "${ref_file_args[@]}" \
        --token_list "${token_list}" --token_type "${token_type}" --bpemodel "${bpemodel}" --fs "${fs_int}" \
        --asr_config "${asr_config}" --stats_file "${asr_stats_dir}/train/feats_stats.npz" \
        --normalize "${feats_normalize}" --model_name "${inference_asr_model}" \
        --overwrite "${ref_overwrite}" --out_dir "${ref_exp}" | tail -n 1) \
        || die "stage 11: importing --ref_model ${ref_model} failed (see above); nothing was trained"
    finish "$( [ "${ref_status}" = skipped ] && echo skipped || echo done)"
}

train_reference_step() {  # 11a: train the reference ${ref_exp}, or check the one --ref_exp / --ref_model names
    if [ "${ref_exp}" != "${expdir}/asr_${asr_tag}" ]; then
        local f
        for f in config.yaml "${inference_asr_model}"; do
            [ -f "${ref_exp}/${f}" ] || die "--ref_exp ${ref_exp}: ${ref_exp}/${f} not found"
        done
        log "stage 11: using the reference in ${ref_exp}"
        return 0
    fi
    # --overwrite true with a student config redoes the student, never the reference it learns from:
    # a trained reference is used as is, an unfinished one is trained (or resumed) first
    local overwrite="${overwrite}"
    if [ -n "${student_config}" ]; then
        if [ -e "${ref_exp}/.done.stage11" ]; then
            log "stage 11: using the trained reference ${ref_exp} (--overwrite applies to the student only)"
            return 0
        fi
        overwrite=false
    fi
    # shellcheck disable=SC2086
    train_model "${ref_exp}" "${asr_config}" ${asr_args}
}

dump_targets_step() {  # 11b (EncRL, KD): the reference's targets of the training set, computed once for every student
    # Not run_step: the targets belong to the reference, so no --overwrite (of a student) redoes them. The dump
    # itself judges an existing cache: one of this reference and these data (the contents of the training dir's
    # wav.scp, text, utt2num_samples) holding both targets (encoder outputs for EncRL, CTC log-posteriors for KD)
    # is reused; a stale one (retrained reference, re-filtered data, an old cache without log-posteriors) is
    # moved aside (<dir>.old.<time>) and made again.
    begin 11 "reference targets ${ref_targets}"
    local before="" dump_dev_args=(--nj "${nj}")
    # --ngpu N: one dump job per GPU (cuda:0..N-1); otherwise --nj CPU jobs
    if [ "${ngpu}" -gt 0 ]; then dump_dev_args=(--nj "${ngpu}" --device cuda); fi
    [ ! -e "${ref_targets}/.done.stage11" ] || before=$(stat -c %Y.%s "${ref_targets}/info.yaml" 2>/dev/null || true)
    ${python} -m espnet_lw.bin.dump_reference_targets "${ref_args[@]}" --what enc,logp --overwrite true \
        --data_dir "${data_feats}/${train_set_sp}" --output_dir "${ref_targets}" "${dump_dev_args[@]}" \
        || die "stage 11: the reference targets ${ref_targets} were not written (see above)"
    if [ -n "${before}" ] && [ -e "${ref_targets}/.done.stage11" ] \
        && [ "${before}" = "$(stat -c %Y.%s "${ref_targets}/info.yaml" 2>/dev/null || true)" ]; then
        log "stage 11: ${ref_targets} already holds the reference targets: reused"
        finish skipped
        return 0
    fi
    touch "${ref_targets}/.done.stage11"
    finish done
}

conf_set() {  # conf_set FILE KEY[.KEY...]: whether FILE (YAML/JSON) sets KEY (present, not null, false or empty)
    ${python} -c 'import sys, yaml
c = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
for key in sys.argv[2].split("."):
    c = c.get(key) if isinstance(c, dict) else None
sys.exit(0 if c else 1)' "$1" "$2"
}

train_student_step() {  # 11c-d: the student ${student_exp} of the reference, as --student_mode says
    local conf_dir="${student_exp}/conf" cache_args=() train_cache_args=() seed_args=() init
    if [ "${student_mode}" = encrl ] && [ "${ref_cache}" = true ]; then
        cache_args=(--reference_cache "${ref_targets}")
    elif [ "${student_mode}" = kd ]; then  # KD reads the reference's CTC log-posteriors from the same cache
        cache_args=(--reference_cache "${ref_targets}")
        train_cache_args=(--train_data_path_and_name_and_type "${ref_targets}/ref_logp.scp,ref_logp,kaldi_ark")
    fi
    [ -z "${student_seed}" ] || seed_args=(--seed "${student_seed}")
    # --overwrite true redoes the whole student: its dir is moved aside once, here, before its configs are
    # written into a fresh one; the trainings below then start from nothing (or resume), never move it again
    [ "${overwrite}" = false ] || move_aside "${student_exp}"
    local overwrite=false
    mkdir -p "${conf_dir}"
    ${python} -m espnet_lw.bin.make_student_configs "${ref_args[@]}" --student_config "${student_config}" \
        --mode "${student_mode}" --out_dir "${conf_dir}" --trained_dir "${student_exp}" "${cache_args[@]}" \
        "${seed_args[@]}" || die "stage 11: the configs of ${student_exp} were not written (see above)"
    # shellcheck disable=SC2086
    case "${student_mode}" in
        encrl)
            # 11c: EncRL, then 11d: linear-CTC fine-tuning initialised from it
            # (finetune.kd in the student config: the fine-tune reads the reference's posteriors too)
            local ft_cache_args=()
            # the EncRL step reads the cached encoder outputs when its config names the cache (not with
            # alignment.layers: that term runs the reference on the fly)
            if conf_set "${conf_dir}/encrl.yaml" model_conf.reference_cache; then
                train_cache_args=(--train_data_path_and_name_and_type "${ref_targets}/ref_enc.scp,ref_enc,kaldi_ark")
            fi
            if conf_set "${conf_dir}/student.json" kd; then
                ft_cache_args=(--train_data_path_and_name_and_type "${ref_targets}/ref_logp.scp,ref_logp,kaldi_ark")
            fi
            train_model "${student_exp}/encrl" "${conf_dir}/encrl.yaml" "${train_cache_args[@]}" ${student_args}
            train_model "${student_exp}" "${conf_dir}/finetune.yaml" "${ft_cache_args[@]}" \
                --init_param "${student_exp}/encrl/${inference_asr_model}:::alignment" ${student_args}
            ;;
        scratch)
            train_model "${student_exp}" "${conf_dir}/scratch.yaml" ${student_args}
            ;;
        pruned)
            if [ ! -e "${student_exp}/.done.stage11" ]; then  # from the blocks.txt just written
                ${python} -m espnet_lw.bin.init_student "${ref_args[@]}" \
                    --student_config "${conf_dir}/finetune.yaml" --blocks "$(cat "${conf_dir}/blocks.txt")" \
                    --out "${conf_dir}/init.pth"
            fi
            train_model "${student_exp}" "${conf_dir}/finetune.yaml" --init_param "${conf_dir}/init.pth" ${student_args}
            ;;
        control|kd)
            # the EncRL student's own init (init_blocks.txt; none: random) and the fine-tune's schedule, no EncRL
            init=()
            if [ -f "${conf_dir}/init_blocks.txt" ]; then
                if [ ! -e "${student_exp}/.done.stage11" ]; then
                    ${python} -m espnet_lw.bin.init_student "${ref_args[@]}" \
                        --student_config "${conf_dir}/${student_mode}.yaml" \
                        --blocks "$(cat "${conf_dir}/init_blocks.txt")" --out "${conf_dir}/init.pth"
                fi
                init=(--init_param "${conf_dir}/init.pth")
            fi
            train_model "${student_exp}" "${conf_dir}/${student_mode}.yaml" "${init[@]}" "${train_cache_args[@]}" \
                ${student_args}
            ;;
    esac
}

if run_stage 11; then
    if [ -n "${ref_model}" ]; then
        import_reference_step
    fi
    train_reference_step
    if [ -n "${student_config}" ]; then
        [ -f "${student_config}" ] || die "${student_config}: no such student config (see conf/student_r*.yaml)"
        if { [ "${student_mode}" = encrl ] && [ "${ref_cache}" = true ]; } || [ "${student_mode}" = kd ]; then
            dump_targets_step
        fi
        train_student_step
    fi
fi

decode_set() {  # decode_set DSET OUT
    local device_args="--ngpu 0"
    [ "${gpu_inference}" = false ] || device_args="--ngpu 1"
    # shellcheck disable=SC2086
    ${python} -m espnet_lw.bin.asr_inference --config "${inference_config}" \
        --asr_train_config "${asr_exp}/config.yaml" --asr_model_file "${asr_exp}/${inference_asr_model}" \
        --data_path_and_name_and_type "${data_feats}/$1/wav.scp,speech,sound" \
        --output_dir "$2" --nj "${inference_nj}" ${device_args} ${inference_args}
}

# decode_step DSET WHAT: decode DSET with ${asr_exp}'s model into ${asr_exp}/${inference_tag}/DSET, as one
# resumable step whose marker records the model, the decoding options and the audio list (stages 12, 16).
decode_step() {
    local dset="$1" out="${asr_exp}/${inference_tag}/$1"
    step_opts="model=${asr_exp}/${inference_asr_model} ($(file_hash "${asr_exp}/${inference_asr_model}"))
inference_config=${inference_config} ($(file_hash "${inference_config}"))
inference_args=${inference_args}
wav.scp=$(file_hash "${data_feats}/${dset}/wav.scp")"
    step_kind=tmp
    run_step "${out}/.done.stage12" "${out}" "$2: ${out} already decoded" decode_set "${dset}" "${out}"
}

if run_stage 12; then
    begin 12 "decoding ${asr_exp}/${inference_tag}"
    status=skipped  # "done" once any set is decoded by this run
    [ -f "${asr_exp}/${inference_asr_model}" ] || die "${asr_exp}/${inference_asr_model} not found: run stage 11 first"
    for dset in ${test_sets}; do
        decode_step "${dset}" "stage 12"
        [ "${step_status}" = skipped ] || status=done
    done
    finish "${status}"
fi

if run_stage 13; then
    begin 13 "scoring ${asr_exp}/${inference_tag}"
    for dset in ${test_sets}; do
        out="${asr_exp}/${inference_tag}/${dset}"
        # only a decode that stage 12 finished is scored (its hypotheses are then complete: score_sclite
        # refuses a reference utterance without one)
        [ -f "${out}/.done.stage12" ] || die "${out}: stage 12 has not finished decoding ${dset}$([ -f "${out}/text" ] || echo " (no text)"): run stage 12 first"
        ${python} -m espnet_lw.bin.score_sclite --ref "${data_feats}/${dset}/text" --hyp "${out}/text" \
            --utt2spk "${data_feats}/${dset}/utt2spk" --out "${out}"
    done
    finish done
    ${python} -m espnet_lw.bin.make_results --exp_dir "${expdir}" --out RESULTS.md \
        --command "${command_line}" --stage_times "${stage_times}"
    log "wrote $(pwd)/RESULTS.md"
fi

# Stage 14: the model packed with ESPnet's own packer (asr.sh's stage 14): ${asr_exp}/packed/model.zip,
# loadable by Speech2Text(**unpack(zip, dir)) without espnet-lw; the card gets the stage-13 WER tables
# when the model has been scored.
pack_model() {  # pack_model OUT_DIR
    local results_args=()
    if ls "${asr_exp}/${inference_tag}"/*/score_wer/result.txt > /dev/null 2>&1; then
        results_args=(--decode_dir "${asr_exp}/${inference_tag}")
    fi
    ${python} -m espnet_lw.bin.pack_model --asr_train_config "${asr_exp}/config.yaml" \
        --asr_model_file "${asr_exp}/${inference_asr_model}" --out "$1/model.zip" \
        ${results_args[@]+"${results_args[@]}"} --command "${command_line}"  # empty-array safe under set -u, bash < 4.4
}

if run_stage 14; then
    begin 14 "packing ${asr_exp}"
    [ -f "${asr_exp}/${inference_asr_model}" ] || die "${asr_exp}/${inference_asr_model} not found: run stage 11 first"
    out="${asr_exp}/packed"
    step_opts="model=${asr_exp}/${inference_asr_model} ($(file_hash "${asr_exp}/${inference_asr_model}"))"
    step_kind=tmp
    run_step "${out}/.done.stage14" "${out}" "stage 14: ${out}/model.zip already packed" pack_model "${out}"
    finish "${step_status}"
fi

# Stage 15: ONNX export (fp32 + int8, tokens.txt, meta.json, parity.json) into ${asr_exp}/onnx; the parity
# check decodes the first ${export_parity_n} dev utterances (the WER of each precision is in parity.json, as
# the dev set has a text file). The runtime: python -m espnet_lw.bin.transcribe ${asr_exp}/onnx file.wav
export_model() {  # export_model OUT_DIR
    # shellcheck disable=SC2086
    ${python} -m espnet_lw.bin.export_onnx --asr_train_config "${asr_exp}/config.yaml" \
        --asr_model_file "${asr_exp}/${inference_asr_model}" --out_dir "$1" \
        --parity_scp "${data_feats}/${valid_set}/wav.scp" --parity_n "${export_parity_n}" \
        --default_precision "${export_precision}" ${export_args}
}

if run_stage 15; then
    begin 15 "exporting ${asr_exp} to ONNX"
    [ -f "${asr_exp}/${inference_asr_model}" ] || die "${asr_exp}/${inference_asr_model} not found: run stage 11 first"
    [ -f "${data_feats}/${valid_set}/wav.scp" ] || die "${data_feats}/${valid_set}/wav.scp not found: run stage 3 first"
    out="${asr_exp}/onnx"
    step_opts="model=${asr_exp}/${inference_asr_model} ($(file_hash "${asr_exp}/${inference_asr_model}"))
export_parity_n=${export_parity_n}
export_precision=${export_precision}
export_args=${export_args}"
    step_kind=tmp
    run_step "${out}/.done.stage15" "${out}" "stage 15: ${out} already exported" export_model "${out}"
    finish "${step_status}"
fi

# ------------------------------------------------------------------------- stage 16: field adaptation
# A trained model (--adapt_model; default: the --student_config student, else the reference) fine-tuned on
# --adapt_set as --adapt_config says (espnet_lw/adapt/), in its own exp dir ${expdir}/adapt_<tag>; the model
# itself is only read. 16a formats the adapt set and the --adapt_test_sets not formatted yet (stages 1/3/4's
# checks and code; --overwrite never redoes them here), 16b prepares the data (replay) and the config and trains
# (resumable), 16c decodes and scores --adapt_test_sets like stages 12-13, 16d writes the before/after table
# <adapt dir>/adapt_results.md. --overwrite true redoes 16b-16d (the old dir is kept as *.old.<time>); a finished
# adaptation made with other options is refused. <adapt dir>/reference: the adapted weights under the original
# config.yaml, the --ref_exp to derive students from.
adapt_format_step() {  # 16a
    local overwrite=false dset dst src
    for dset in "${adapt_set}" ${adapt_test_sets}; do
        [ -d "data/${dset}" ] || die "stage 16: data/${dset} does not exist: make it with local/data.sh, or import your
    own data: python -m espnet_lw.bin.import_field_data --manifest FILE|--librispeech_dir DIR|--kaldi_dir DIR data/${dset}"
        if [ "${dset}" = "${adapt_set}" ]; then dst="${data_feats}/org/${dset}"; else dst="${data_feats}/${dset}"; fi
        [ ! -e "${dst}/.done.stage3" ] || continue
        ${python} -m espnet_lw.bin.validate_data_dir --same_case_as "data/${train_set}" "data/${dset}"
        format_step "${dset}" "${dst}" "stage 16"
    done
    src="${data_feats}/org/${adapt_set}"
    dst="${data_feats}/${adapt_set}"
    step_opts="$(filter_opts "${src}")"
    step_kind=fresh
    run_step "${dst}/.done.stage4" "${dst}" "stage 16: ${dst} already filtered" \
        ${python} -m espnet_lw.bin.filter_data_dir --fs "${fs_int}" --min_wav_duration "${min_wav_duration}" \
        --max_wav_duration "${max_wav_duration}" "${src}" "${dst}"
}

_adapt_train() {  # 16b: the adaptation's data and config, then ESPnet's trainer (resumes from checkpoint.pth)
    local d="${adapt_exp}/data"
    mkdir -p "${adapt_exp}"
    ${python} -m espnet_lw.bin.adapt prepare --model_dir "${adapt_model}" --model_file "${inference_asr_model}" \
        --config "${adapt_config}" --adapt_data "${data_feats}/${adapt_set}" \
        --replay_data "${data_feats}/${train_set_sp}" --fs "${fs_int}" --token_suffix "${token_suffix}" \
        --out_dir "${adapt_exp}" > /dev/null || die "stage 16: the adaptation ${adapt_exp} was not prepared (see above)"
    log "adaptation log: ${adapt_exp}/train.log (resumes from ${adapt_exp}/checkpoint.pth if present)"
    # shellcheck disable=SC2086
    run_trainer "${adapt_exp}" adaptation --config "${adapt_exp}/conf/train.yaml" --output_dir "${adapt_exp}" \
        --ngpu "${ngpu}" --resume true --params_report "${adapt_exp}/params.txt" \
        --train_data_path_and_name_and_type "${d}/train/wav.scp,speech,sound" \
        --train_data_path_and_name_and_type "${d}/train/text,text,text" \
        --valid_data_path_and_name_and_type "${d}/valid/wav.scp,speech,sound" \
        --valid_data_path_and_name_and_type "${d}/valid/text,text,text" \
        --train_shape_file "${d}/shape/train/speech_shape" --train_shape_file "${d}/shape/train/text_shape.${token_suffix}" \
        --valid_shape_file "${d}/shape/valid/speech_shape" --valid_shape_file "${d}/shape/valid/text_shape.${token_suffix}" \
        ${adapt_args}
    ${python} -m espnet_lw.bin.adapt reference --model_dir "${adapt_model}" --model_file "${inference_asr_model}" \
        --out_dir "${adapt_exp}" > /dev/null
    printf '%s\n' "${command_line}" > "${adapt_exp}/run_command.txt"
}

adapt_decode_step() {  # 16c: decode and score --adapt_test_sets with the adapted model (stages 12-13's code)
    local asr_exp="${adapt_exp}" dset out
    for dset in ${adapt_test_sets}; do
        out="${adapt_exp}/${inference_tag}/${dset}"
        decode_step "${dset}" "stage 16"
        ${python} -m espnet_lw.bin.score_sclite --ref "${data_feats}/${dset}/text" --hyp "${out}/text" \
            --utt2spk "${data_feats}/${dset}/utt2spk" --out "${out}" > /dev/null
    done
}

if run_stage 16; then
    [ -n "${adapt_set}" ] || die "stage 16 needs --adapt_set (a set under data/, e.g. field_adapt; your own data:
    python -m espnet_lw.bin.import_field_data)"
    [ -f "${adapt_config}" ] || die "--adapt_config ${adapt_config}: no such file (see conf/adapt*.yaml)"
    [ -n "${adapt_model}" ] || adapt_model="${asr_exp}"
    adapt_model="${adapt_model%/}"
    [ -f "${adapt_model}/${inference_asr_model}" ] && [ -f "${adapt_model}/config.yaml" ] \
        || die "--adapt_model ${adapt_model}: no trained model there (config.yaml + ${inference_asr_model}): run stage 11 first"
    if [ -z "${adapt_tag}" ]; then
        _suffix="$(basename "${adapt_config}" .yaml)"; _suffix="${_suffix#adapt}"; _suffix="${_suffix#_}"
        _model_name="$(basename "${adapt_model}")"
        adapt_tag="${_model_name#asr_}${_suffix:+_${_suffix}}_${adapt_set}"
    fi
    [[ "${adapt_tag}" =~ ^[A-Za-z0-9_.+-]+$ ]] || die "--adapt_tag is a directory name (letters, digits, _ . + -), got '${adapt_tag}'"
    adapt_exp="${expdir}/adapt_${adapt_tag}"
    [ "$(realpath -m "${adapt_model}")" != "$(realpath -m "${adapt_exp}")" ] \
        || die "--adapt_model and the adaptation's dir are the same (${adapt_exp}): the original is never overwritten"
    begin 16 "adapting ${adapt_model} on ${adapt_set}: ${adapt_exp}"
    adapt_format_step
    step_opts="model=${adapt_model}/${inference_asr_model} ($(file_hash "${adapt_model}/${inference_asr_model}"))
adapt_config=${adapt_config} ($(file_hash "${adapt_config}"))
adapt_args=${adapt_args}
adapt wav.scp=$(file_hash "${data_feats}/${adapt_set}/wav.scp")
adapt text=$(file_hash "${data_feats}/${adapt_set}/text")
replay wav.scp=$(file_hash "${data_feats}/${train_set_sp}/wav.scp")"
    step_kind=resume
    run_step "${adapt_exp}/.done.stage16" "${adapt_exp}" "stage 16: ${adapt_exp} is adapted" _adapt_train
    status="${step_status}"
    adapt_decode_step
    ${python} -m espnet_lw.bin.adapt report --model_dir "${adapt_model}" --out_dir "${adapt_exp}" \
        --decode_tag "${inference_tag}" --sets "${adapt_test_sets}" \
        --train_seconds "$(${python} -m espnet_lw.bin.train_time "${adapt_exp}/train.log")" >&2
    log "wrote ${adapt_exp}/adapt_results.md"
    finish "${status}"
fi

log "Successfully finished stages ${stage}-${stop_stage} in ${SECONDS}s"
exit 0
}  # the end of the brace group opened at the top: keep this the last line
