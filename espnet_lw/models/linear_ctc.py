"""Linear-CTC shallow encoder model: encoder -> one linear projection -> CTC.

It is ESPnet's :class:`~espnet2.asr.espnet_model.ESPnetASRModel` restricted to the CTC branch
(no attention decoder, no LSTM, ``ctc_weight`` fixed to 1.0), so that ESPnet's trainer,
checkpoint averaging, packing and ``Speech2Text`` keep working on it unchanged. The encoder is a
stock ESPnet encoder (a ``ConformerEncoder`` with few ``num_blocks`` for the students).
"""

from __future__ import annotations

from espnet2.asr.espnet_model import ESPnetASRModel

from espnet_lw.utils.cli import UserError


def ctc_only_kwargs(model: str, kwargs: dict, ctc_weight_fix: str) -> dict:
    """``ESPnetASRModel`` keyword arguments of a CTC-only ``model`` (``lw_ctc``, ``lw_encrl``).

    Refuses an attention decoder and a ``model_conf.ctc_weight`` other than 1.0 (``ctc_weight_fix``
    says what to do instead); returns the arguments with ``ctc_weight`` 1.0 and, unless given,
    ``report_wer`` off (CTC-only models are scored by the decoding stage).
    """
    if kwargs.get("decoder") is not None:
        raise UserError(f"model '{model}' has no attention decoder: set 'decoder: none' (or drop 'decoder') "
                        "in the config")
    out = dict(kwargs)
    ctc_weight = out.pop("ctc_weight", 1.0)
    if ctc_weight != 1.0:
        raise UserError(f"model '{model}' is CTC-only: {ctc_weight_fix} (got ctc_weight {ctc_weight})")
    out.setdefault("report_wer", False)
    out["ctc_weight"] = 1.0
    return out


class LinearCTCModel(ESPnetASRModel):
    """Encoder + linear CTC head; rejects decoders and CTC weights other than 1.0."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **ctc_only_kwargs("lw_ctc", kwargs, "model_conf.ctc_weight must be 1.0"))
