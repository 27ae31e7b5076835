"""Linear-CTC shallow encoder model: encoder -> one linear projection -> CTC.

It is ESPnet's :class:`~espnet2.asr.espnet_model.ESPnetASRModel` restricted to the CTC branch
(no attention decoder, no LSTM, ``ctc_weight`` fixed to 1.0), so that ESPnet's trainer,
checkpoint averaging, packing and ``Speech2Text`` keep working on it unchanged. The encoder is a
stock ESPnet encoder (a ``ConformerEncoder`` with few ``num_blocks`` for the students).

Logit knowledge distillation (the ``kd`` student mode) is an option of this model that changes
training only::

    model: lw_ctc
    model_conf:
        kd: {weight: 1.0, temperature: 2.0}    # espnet_lw.losses.config.KDConfig
        kd_length_tolerance: 2                 # cached vs. in-batch output lengths may differ by this much

With ``kd``, every training batch must carry the reference's CTC log-posteriors ``ref_logp`` (read by
ESPnet's data loader from the reference-target cache, espnet_lw.models.targets) and the loss is
``CTC + weight * T^2 * KL(p_ref^T || p_student^T)`` over the valid frames
(:func:`espnet_lw.losses.distill.kd_loss`). Validation batches carry no ``ref_logp`` (the cache
holds the training set): their loss is the CTC loss, comparable with every other student's.
The model has no parameter more than without ``kd``: its checkpoints are plain CTC students, and
packing drops the training-only keys (:data:`TRAINING_ONLY_KEYS`).
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple, Union

import torch
from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.torch_utils.device_funcs import force_gatherable

from espnet_lw.losses.config import LW_CTC_TRAINING_ONLY_KEYS, KDConfig
from espnet_lw.losses.distill import fit_time, kd_loss
from espnet_lw.utils.cli import ConfigError, UserError

#: model_conf keys of lw_ctc that only shape training (a packed model for stock ESPnet drops them)
TRAINING_ONLY_KEYS = LW_CTC_TRAINING_ONLY_KEYS


def own_stats(stats: Dict[str, Optional[torch.Tensor]]) -> Dict[str, Optional[torch.Tensor]]:
    """``stats`` with every tensor detached into storage of its own.

    ESPnet's trainer divides the returned loss *in place* by ``accum_grad`` (``loss /= accum_grad``)
    before it logs the stats, so a stat that is ``loss.detach()`` (or the very tensor the loss is, such
    as ``loss_ctc`` of a CTC-only model) shares the loss's storage and is logged at 1/accum_grad of its
    value, while the other terms are not: with ``accum_grad: 4`` a KD student's train.log showed
    ``loss`` = (loss_ctc + loss_kd) / 4. Validation has no division, so model selection never saw it.
    """
    return {k: (v.detach().clone() if isinstance(v, torch.Tensor) else v) for k, v in stats.items()}


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
    """Encoder + linear CTC head; rejects decoders and CTC weights other than 1.0; optional KD."""

    def __init__(self, *args, kd: Union[None, KDConfig, Mapping] = None, kd_length_tolerance: int = 2, **kwargs):
        super().__init__(*args, **ctc_only_kwargs("lw_ctc", kwargs, "model_conf.ctc_weight must be 1.0"))
        try:
            self.kd: Optional[KDConfig] = KDConfig.coerce(kd, "model_conf.kd") if kd is not None else None
        except ConfigError as e:
            raise UserError(e.what, fix="see espnet_lw/losses/config.py (KDConfig) for the keys and values") from e
        if isinstance(kd_length_tolerance, bool) or not isinstance(kd_length_tolerance, int) or kd_length_tolerance < 0:
            raise UserError(f"model_conf.kd_length_tolerance must be an integer >= 0, got {kd_length_tolerance!r}")
        self.kd_length_tolerance = kd_length_tolerance
        self._kd_capture: Optional[list] = None

    def encode(self, speech: torch.Tensor, speech_lengths: torch.Tensor):
        out = super().encode(speech, speech_lengths)
        if self._kd_capture is not None:  # KD training: ESPnet's forward's encoder output, for the KD term
            self._kd_capture.append(out)
        return out

    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        ref_logp: Optional[torch.Tensor] = None,
        ref_logp_lengths: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """ESPnet's CTC loss; with ``kd`` and ``ref_logp`` in the batch, plus the weighted KD term."""
        if self.kd is None or ref_logp is None:
            if self.kd is not None and self.training:
                raise UserError(
                    "model_conf.kd is set but the training batch has no ref_logp (the reference's CTC "
                    "log-posteriors)",
                    fix="give the trainer --train_data_path_and_name_and_type <cache>/ref_logp.scp,ref_logp,kaldi_ark "
                        "(written by python -m espnet_lw.bin.dump_reference_targets --what enc,logp)",
                )
            loss, stats, weight = super().forward(speech, speech_lengths, text, text_lengths, **kwargs)
            return loss, own_stats(stats), weight
        self._kd_capture = []
        try:
            loss, stats, weight = super().forward(speech, speech_lengths, text, text_lengths, **kwargs)
            enc, enc_lens = self._kd_capture[-1]
        finally:
            self._kd_capture = None
        if isinstance(enc, tuple):
            enc = enc[0]
        vocab = self.ctc.ctc_lo.out_features
        if ref_logp.size(-1) != vocab:
            raise UserError(
                f"KD: the cached reference posteriors have {ref_logp.size(-1)} classes, the student's CTC head "
                f"{vocab}: the reference and the student need the same token list",
                fix="train the student with the reference's token_list (same BPE model)",
            )
        r_lens = (ref_logp_lengths if ref_logp_lengths is not None
                  else torch.full_like(enc_lens, ref_logp.size(1))).to(enc_lens.device)
        diff = int((enc_lens - r_lens).abs().max())
        if diff > self.kd_length_tolerance:
            raise RuntimeError(
                "KD: the cached reference posteriors do not fit the student's frames: student output lengths "
                f"{enc_lens.tolist()}, cached {r_lens.tolist()} (utterances {kwargs.get('utt_id')}); the reference "
                "and the student need the same frontend hop_length and encoder input_layer (subsampling), and "
                "the cache must come from this training data"
            )
        lens = torch.minimum(enc_lens, r_lens)
        s_logp = self.ctc.log_softmax(enc)
        r_logp = fit_time(ref_logp.to(s_logp.device, s_logp.dtype), s_logp.size(1))
        loss_kd = kd_loss(s_logp, r_logp, lens, self.kd.temperature)
        loss = loss + self.kd.weight * loss_kd
        stats["loss_kd"] = loss_kd
        stats["loss"] = loss
        loss, stats, weight = force_gatherable((loss, own_stats(stats), weight), loss.device)
        return loss, stats, weight
