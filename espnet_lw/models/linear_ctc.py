"""Linear-CTC shallow encoder model: encoder -> one linear projection -> CTC.

It is ESPnet's :class:`~espnet2.asr.espnet_model.ESPnetASRModel` restricted to the CTC branch
(no attention decoder, no LSTM, ``ctc_weight`` fixed to 1.0), so that ESPnet's trainer,
checkpoint averaging, packing and ``Speech2Text`` keep working on it unchanged. The encoder is a
stock ESPnet encoder (a ``ConformerEncoder`` with few ``num_blocks`` for the students).
"""

from __future__ import annotations

from espnet2.asr.espnet_model import ESPnetASRModel


class LinearCTCModel(ESPnetASRModel):
    """Encoder + linear CTC head; rejects decoders and CTC weights other than 1.0."""

    def __init__(self, *args, **kwargs):
        if kwargs.get("decoder") is not None:
            raise ValueError(
                "model 'lw_ctc' has no attention decoder: set 'decoder: none' (or drop 'decoder') in the config"
            )
        ctc_weight = kwargs.pop("ctc_weight", 1.0)
        if ctc_weight != 1.0:
            raise ValueError(f"model 'lw_ctc' is CTC-only: model_conf.ctc_weight must be 1.0, got {ctc_weight}")
        kwargs.setdefault("report_wer", False)
        super().__init__(*args, ctc_weight=1.0, **kwargs)
