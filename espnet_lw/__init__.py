"""espnet-lw: light-weight ASR students from one large ESPnet reference model.

Importing this package makes ESPnet's import quiet and offline (see
:mod:`espnet_lw.utils.quiet`): g2p_en's ``nltk.download`` calls are turned
into no-ops and the Flash Attention banner is kept off stdout.
"""

from espnet_lw.utils.quiet import make_espnet_quiet

__version__ = "0.1.0"

make_espnet_quiet()
