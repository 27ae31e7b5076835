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
student_mode=encrl      # encrl (EncRL + fine-tune) | scratch (baseline) | pruned (reference blocks + fine-tune)
student_tag=""          # default: <student config name>_<student_mode>
student_args=""         # extra arguments for the student's training runs (e.g. "--max_epoch 2")
ref_exp=""              # a trained reference exp dir (config.yaml + model); default: the one stage 11 trains
ref_model=""            # a pretrained ESPnet ASR model as the reference: packed .zip (espnet2.bin.pack), exp dir or config.yaml
ref_model_file=""       # with --ref_model config.yaml (or an exp dir): its model .pth
ref_cache=true          # EncRL: compute the reference's targets once and reuse them

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

Options (default in brackets):
  --stage N --stop_stage N     run stages N..M [${stage}..${stop_stage}]
  --ngpu N                     GPUs for training [${ngpu}]
  --nj N --inference_nj N      parallel jobs [${nj}, ${inference_nj}]
  --gpu_inference BOOL         decode on GPU [${gpu_inference}]
  --dumpdir DIR --expdir DIR   output dirs [${dumpdir}, ${expdir}]
  --overwrite BOOL             redo finished stages, keeping old output aside [${overwrite}]
                               (with --student_config: the student only, not the reference)
  --local_data_opts STR        options for local/data.sh [${local_data_opts}]
  --fs RATE --audio_format FMT [${fs}, ${audio_format}]
  --min_wav_duration S --max_wav_duration S   [${min_wav_duration}, ${max_wav_duration}]
  --speed_perturb_factors STR  e.g. \"0.9 1.0 1.1\" [${speed_perturb_factors}]
  --token_type bpe|char --nbpe N --bpemode unigram|bpe --bpe_train_text FILE
  --asr_config YAML --asr_tag NAME --asr_args STR
  --student_config YAML       train a student of the reference in stage 11, decode it in 12-13
  --student_mode encrl|scratch|pruned --student_tag NAME --student_args STR
  --ref_exp DIR                a trained reference (config.yaml + model) instead of training one
  --ref_model PATH             a pretrained ESPnet ASR model as the reference, no reference training: a .zip
                               packed by espnet2.bin.pack, an exp dir, or a config.yaml with --ref_model_file
                               X.pth; checked against the recipe (tokens, --fs, frontend, normalisation) and
                               imported into <expdir>/asr_ref_pretrained
  --ref_cache BOOL             EncRL: reuse the reference's targets computed once [${ref_cache}]
  --inference_config YAML --inference_tag NAME --inference_args STR
  --inference_asr_model FILE   model file in the experiment dir [${inference_asr_model}]
  --export_parity_n N          stage 15: dev utterances in the parity check (0: all) [${export_parity_n}]
  --export_precision P         stage 15: the runtime's default precision: int8, fp32 or auto [${export_precision}]
  --export_args STR            stage 15: more options for espnet_lw.bin.export_onnx
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
[[ "${stage}" =~ ^[0-9]+$ && "${stop_stage}" =~ ^[0-9]+$ ]] || die "--stage/--stop_stage must be integers"
case "${overwrite}" in true|false) ;; *) die "--overwrite must be true or false" ;; esac
case "${token_type}" in bpe|char) ;; *) die "--token_type must be bpe or char, got '${token_type}'" ;; esac

# sampling rate as an integer
case "${fs}" in *k) fs_int=$(( ${fs%k} * 1000 )) ;; *) fs_int=${fs} ;; esac

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
case "${student_mode}" in encrl|scratch|pruned) ;; *) die "--student_mode must be encrl, scratch or pruned" ;; esac
if [ -n "${student_config}" ]; then
    [ -n "${student_tag}" ] || student_tag="$(basename "${student_config}" .yaml)_${student_mode}"
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

# run_step MARKER OUTPUT "what" COMMAND [ARGS...]: the resumable unit every stage is made of.
# Skipped when MARKER exists (unless --overwrite true); otherwise OUTPUT (when given) is moved aside
# under --overwrite true, COMMAND runs, and MARKER is written as the last act. Sets step_status to
# done or skipped. Call it as a plain command (not inside if/||), so that a failing COMMAND stops lw.sh.
step_status=""
run_step() {
    local marker="$1" output="$2" what="$3"; shift 3
    if is_done "${marker}"; then
        log "${what}: skipped (${marker} exists; --overwrite true redoes it)"
        step_status=skipped
        return 0
    fi
    [ "${overwrite}" = true ] && [ -n "${output}" ] && move_aside "${output}"
    "$@"
    mkdir -p "$(dirname "${marker}")"
    touch "${marker}"
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
    for dset in "${train_set}" "${valid_set}" ${test_sets}; do
        ${python} -m espnet_lw.bin.validate_data_dir "data/${dset}"
    done
}

if run_stage 1; then
    begin 1 "data preparation"
    run_step data/.done.stage1 "" "stage 1: data/ already prepared" prepare_data
    finish "${step_status}"
fi

if run_stage 2; then
    begin 2 "speed perturbation"
    if [ -z "${speed_perturb_factors}" ]; then
        log "stage 2: no --speed_perturb_factors: skipped"
        step_status=skipped
    else
        run_step "data/${train_set_sp}/.done.stage2" "data/${train_set_sp}" "stage 2: data/${train_set_sp} already made" \
            ${python} -m espnet_lw.bin.speed_perturb --factors "${speed_perturb_factors}" \
            "data/${train_set}" "data/${train_set_sp}"
    fi
    finish "${step_status}"
fi

format_set() {  # format_set DSET DST
    [ -d "data/$1" ] || die "data/$1 does not exist: run stage 1 (and 2) first"
    ${python} -m espnet_lw.bin.format_wav_scp --fs "${fs_int}" --audio_format "${audio_format}" \
        --nj "${nj}" "data/$1" "$2"
}

if run_stage 3; then
    begin 3 "format wav into ${data_feats}"
    status=skipped  # "done" once any set is formatted by this run
    for dset in "${train_set_sp}" "${valid_set}" ${test_sets}; do
        if [ "${dset}" = "${train_set_sp}" ]; then dst="${data_feats}/org/${dset}"; else dst="${data_feats}/${dset}"; fi
        run_step "${dst}/.done.stage3" "${dst}" "stage 3: ${dst} already formatted" format_set "${dset}" "${dst}"
        [ "${step_status}" = skipped ] || status=done
    done
    finish "${status}"
fi

filter_train_set() {  # filter_train_set DST
    [ -d "${data_feats}/org/${train_set_sp}" ] || die "${data_feats}/org/${train_set_sp} does not exist: run stage 3 first"
    ${python} -m espnet_lw.bin.filter_data_dir --fs "${fs_int}" \
        --min_wav_duration "${min_wav_duration}" --max_wav_duration "${max_wav_duration}" \
        "${data_feats}/org/${train_set_sp}" "$1"
}

if run_stage 4; then
    begin 4 "remove utterances shorter than ${min_wav_duration}s / longer than ${max_wav_duration}s or without text"
    dst="${data_feats}/${train_set_sp}"
    run_step "${dst}/.done.stage4" "${dst}" "stage 4: ${dst} already filtered" filter_train_set "${dst}"
    finish "${step_status}"
fi

make_tokens() {
    [ -n "${bpe_train_text}" ] || bpe_train_text="${data_feats}/${train_set_sp}/text"
    [ -s "${bpe_train_text}" ] || die "${bpe_train_text} is missing or empty: run stages 1-4 first"
    ${python} -m espnet_lw.bin.make_token_list --token_type "${token_type}" --nbpe "${nbpe}" \
        --bpemode "${bpemode}" --character_coverage "${bpe_char_cover}" \
        --oov "${oov}" --blank "${blank}" --sos_eos "${sos_eos}" \
        --text "${bpe_train_text}" --out_dir "${token_dir}"
}

if run_stage 5; then
    begin 5 "token list (${token_type})"
    run_step "${token_dir}/.done.stage5" "${token_dir}" "stage 5: ${token_list} already exists" make_tokens
    finish "${step_status}"
fi

for n in 6 7 8 9; do
    if run_stage "${n}"; then
        begin "${n}" "language model (not used)"
        log "stage ${n}: skipped: this recipe decodes CTC without a language model"
        finish skipped
    fi
done

# Arguments shared by statistics collection and training.
common_train_args() {
    echo --use_preprocessor true --token_type "${token_type}" --token_list "${token_list}" \
        --bpemodel "${bpemodel}" --non_linguistic_symbols none --cleaner none --g2p none \
        --train_data_path_and_name_and_type "${data_feats}/${train_set_sp}/wav.scp,speech,sound" \
        --train_data_path_and_name_and_type "${data_feats}/${train_set_sp}/text,text,text" \
        --valid_data_path_and_name_and_type "${data_feats}/${valid_set}/wav.scp,speech,sound" \
        --valid_data_path_and_name_and_type "${data_feats}/${valid_set}/text,text,text"
}

collect_stats() {
    [ -f "${token_list}" ] || die "${token_list} does not exist: run stage 5 first"
    [ -f "${asr_config}" ] || die "${asr_config}: no such config (see conf/ for the shipped ones)"
    # shellcheck disable=SC2046,SC2086
    ${python} -m espnet_lw.bin.collect_stats --nj "${nj}" --output_dir "${asr_stats_dir}" \
        --config "${asr_config}" $(common_train_args) ${asr_args}
}

if run_stage 10; then
    begin 10 "feature statistics for ${feats_normalize}"
    run_step "${asr_stats_dir}/.done.stage10" "${asr_stats_dir}" "stage 10: ${asr_stats_dir} already has statistics" \
        collect_stats
    finish "${step_status}"
fi

# train_model DIR CONFIG [extra trainer args...]: one resumable training run with ESPnet's trainer.
# Skipped when DIR/.done.stage11 exists; the full log goes to DIR/train.log, one line per epoch
# to the console; DIR/params.txt gets the model size.
train_model() {
    local dir="$1"
    begin 11 "training ${dir}"
    run_step "${dir}/.done.stage11" "${dir}" "stage 11: ${dir} is trained" _train_model "$@"
    if [ "${step_status}" = done ]; then
        # count every epoch, also those of an earlier, interrupted invocation (resume)
        finish done "$(${python} -m espnet_lw.bin.train_time "${dir}/train.log" --wall $(( SECONDS - stage_start )))"
    else
        finish skipped
    fi
}

_train_model() {  # the body of train_model
    local dir="$1" config="$2"; shift 2
    [ -f "${asr_stats_dir}/train/feats_stats.npz" ] || die "${asr_stats_dir}/train/feats_stats.npz missing: run stage 10 first"
    [ -f "${config}" ] || die "${config}: no such config (see conf/ for the shipped ones)"
    mkdir -p "${dir}"
    log "training log: ${dir}/train.log (resumes from ${dir}/checkpoint.pth if present)"
    # shellcheck disable=SC2046,SC2086
    ${python} -m espnet_lw.bin.asr_train --config "${config}" --output_dir "${dir}" \
        --ngpu "${ngpu}" --resume true \
        --frontend_conf fs="${fs}" \
        --normalize "${feats_normalize}" --normalize_conf stats_file="${asr_stats_dir}/train/feats_stats.npz" \
        --train_shape_file "${asr_stats_dir}/train/speech_shape" \
        --train_shape_file "${asr_stats_dir}/train/text_shape.${token_suffix}" \
        --valid_shape_file "${asr_stats_dir}/valid/speech_shape" \
        --valid_shape_file "${asr_stats_dir}/valid/text_shape.${token_suffix}" \
        $(common_train_args) "$@" >> "${dir}/train.log" 2>&1 &
    local train_pid=$!
    # show one line per epoch while the full log goes to train.log
    tail -n 0 -F --pid="${train_pid}" "${dir}/train.log" 2>/dev/null \
        | grep --line-buffered -E "epoch results|ERROR|Traceback|Error:" >&2 || true
    local rc=0
    wait "${train_pid}" || rc=$?
    [ "${rc}" -eq 0 ] || die "training failed (exit ${rc}): see ${dir}/train.log; last lines:
$(tail -n 15 "${dir}/train.log")"
    [ -f "${dir}/${inference_asr_model}" ] || die "training ended without ${dir}/${inference_asr_model}: see ${dir}/train.log"
    ${python} -m espnet_lw.bin.model_info --asr_train_config "${dir}/config.yaml" \
        --asr_model_file "${dir}/${inference_asr_model}" > "${dir}/params.txt"
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

dump_targets_step() {  # 11b (EncRL): the reference's targets of the training set, computed once for every student
    # Not run_step: the targets belong to the reference, so no --overwrite (of a student) redoes them.
    begin 11 "reference targets ${ref_targets}"
    if [ -e "${ref_targets}/.done.stage11" ]; then
        log "stage 11: ${ref_targets} already holds the reference targets: reused"
        finish skipped
        return 0
    fi
    ${python} -m espnet_lw.bin.dump_reference_targets "${ref_args[@]}" \
        --data_dir "${data_feats}/${train_set_sp}" --output_dir "${ref_targets}" --nj "${nj}"
    touch "${ref_targets}/.done.stage11"
    finish done
}

train_student_step() {  # 11c-d: the student ${student_exp} of the reference, as --student_mode says
    local conf_dir="${student_exp}/conf" cache_args=() train_cache_args=()
    if [ "${student_mode}" = encrl ] && [ "${ref_cache}" = true ]; then
        cache_args=(--reference_cache "${ref_targets}")
        train_cache_args=(--train_data_path_and_name_and_type "${ref_targets}/ref_enc.scp,ref_enc,kaldi_ark")
    fi
    # --overwrite true redoes the whole student: its dir is moved aside once, here, before its configs are
    # written into a fresh one; the trainings below then start from nothing (or resume), never move it again
    [ "${overwrite}" = false ] || move_aside "${student_exp}"
    local overwrite=false
    mkdir -p "${conf_dir}"
    ${python} -m espnet_lw.bin.make_student_configs "${ref_args[@]}" --student_config "${student_config}" \
        --mode "${student_mode}" --out_dir "${conf_dir}" --trained_dir "${student_exp}" "${cache_args[@]}" \
        || die "stage 11: the configs of ${student_exp} were not written (see above)"
    # shellcheck disable=SC2086
    case "${student_mode}" in
        encrl)
            # 11c: EncRL, then 11d: linear-CTC fine-tuning initialised from it
            train_model "${student_exp}/encrl" "${conf_dir}/encrl.yaml" "${train_cache_args[@]}" ${student_args}
            train_model "${student_exp}" "${conf_dir}/finetune.yaml" \
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
    esac
}

if run_stage 11; then
    if [ -n "${ref_model}" ]; then
        import_reference_step
    fi
    train_reference_step
    if [ -n "${student_config}" ]; then
        [ -f "${student_config}" ] || die "${student_config}: no such student config (see conf/student_r*.yaml)"
        if [ "${student_mode}" = encrl ] && [ "${ref_cache}" = true ]; then
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

if run_stage 12; then
    begin 12 "decoding ${asr_exp}/${inference_tag}"
    status=skipped  # "done" once any set is decoded by this run
    [ -f "${asr_exp}/${inference_asr_model}" ] || die "${asr_exp}/${inference_asr_model} not found: run stage 11 first"
    for dset in ${test_sets}; do
        out="${asr_exp}/${inference_tag}/${dset}"
        run_step "${out}/.done.stage12" "${out}" "stage 12: ${out} already decoded" decode_set "${dset}" "${out}"
        [ "${step_status}" = skipped ] || status=done
    done
    finish "${status}"
fi

if run_stage 13; then
    begin 13 "scoring ${asr_exp}/${inference_tag}"
    for dset in ${test_sets}; do
        out="${asr_exp}/${inference_tag}/${dset}"
        [ -f "${out}/text" ] || die "${out}/text not found: run stage 12 first"
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
    run_step "${out}/.done.stage15" "${out}" "stage 15: ${out} already exported" export_model "${out}"
    finish "${step_status}"
fi

log "Successfully finished stages ${stage}-${stop_stage} in ${SECONDS}s"
