# Where the corpora of this recipe live (sourced by local/data.sh).
# Paths are relative to the recipe directory (egs2/mini_synth/lw1) unless
# absolute; override from the environment, e.g.
#   MINI_SYNTH=/data/MiniSynth ./run.sh
# MINI_SYNTH: the synthetic LibriSpeech-layout corpus built by
#   python -m espnet_lw.bin.make_mini_synth (local/data.sh builds it if absent).
MINI_SYNTH=${MINI_SYNTH:-corpus/MiniSynth}
