#!/usr/bin/env bash
# Install what espnet-lw needs on a Debian/Ubuntu machine:
#   system tools: sox, flac, sctk (sclite), espeak-ng, flite, wordnet-base (apt-get; needs root or sudo)
#   Python:       this checkout (pip install -e .) with espnet 202511, torchaudio 2.11.0, ...
# Usage: bash egs2/TEMPLATE/lw1/install.sh [--no_system] [--python python3]
# Safe to run again: installed pieces are skipped.
set -euo pipefail

python=python3
system=true
while [ $# -gt 0 ]; do
    case "$1" in
        --no_system) system=false; shift ;;
        --python) python="$2"; shift 2 ;;
        -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "ERROR: unknown option $1 (see --help)" >&2; exit 1 ;;
    esac
done
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"

have_sclite() {
    command -v sclite >/dev/null 2>&1 || [ -x /usr/lib/sctk/bin/sclite ] || [ -n "${SCLITE:-}" ]
}

pkgs=()
for t in sox flac espeak-ng flite; do
    command -v "${t}" >/dev/null 2>&1 || pkgs+=("${t}")
done
[ -f "${WNSEARCHDIR:-/usr/share/wordnet}/data.noun" ] || pkgs+=(wordnet-base)  # mini_synth's sentences
have_sclite || pkgs+=(sctk)
if [ ${#pkgs[@]} -gt 0 ]; then
    if [ "${system}" = false ]; then
        echo "WARNING: missing system packages: ${pkgs[*]} (--no_system given: not installing)" >&2
    else
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        if ! command -v apt-get >/dev/null 2>&1; then
            echo "ERROR: missing system packages ${pkgs[*]} and no apt-get here: install them with your package manager" >&2
            exit 1
        fi
        echo "installing Debian packages: ${pkgs[*]}" >&2
        ${sudo} apt-get update -qq
        DEBIAN_FRONTEND=noninteractive ${sudo} apt-get install -y -qq "${pkgs[@]}" >/dev/null
    fi
fi

# (re)install when a dependency is missing or espnet_lw is installed from another checkout
installed_from="$(cd / && "${python}" -c 'import os, espnet_lw, espnet2, torchaudio, onnxruntime, onnx
print(os.path.dirname(os.path.dirname(os.path.abspath(espnet_lw.__file__))))' 2>/dev/null || true)"
if [ "${installed_from}" != "${repo}" ]; then
    echo "installing the espnet_lw Python package and its dependencies (first time: several minutes)" >&2
    "${python}" -m pip install -q --progress-bar off -e "${repo}[test]"
fi
"${python}" -m espnet_lw.bin.check_tools --need sox,flac,sclite,espeak-ng,flite,wordnet
echo "espnet-lw is installed (repo: ${repo})" >&2
