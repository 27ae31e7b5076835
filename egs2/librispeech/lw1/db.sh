# Where the corpora of this recipe live (sourced by local/data.sh).
# Paths are relative to the recipe directory (egs2/librispeech/lw1) unless absolute;
# override from the environment, e.g.
#   LIBRISPEECH=/data/corpora ./run.sh
# LIBRISPEECH: the directory that contains LibriSpeech/ (LibriSpeech/dev-clean/...).
#   local/data.sh downloads the missing parts from https://www.openslr.org/12 into it.
LIBRISPEECH=${LIBRISPEECH:-downloads}
