# Where the corpora of this recipe live (sourced by local/data.sh).
# Paths are relative to the recipe directory (egs2/tedlium2/lw1) unless absolute;
# override from the environment, e.g.
#   TEDLIUM=/data/corpora ./run.sh
# TEDLIUM: the directory that contains TEDLIUM_release2/ (--release 2, OpenSLR 19) or
#   TEDLIUM_release-3/ (--release 3, OpenSLR 51; its legacy/ split is used).
#   local/data.sh downloads and extracts the release into it when it is missing.
TEDLIUM=${TEDLIUM:-downloads}
