"""EncRL: a shallow student encoder learns to reproduce a frozen reference ASR encoder.

``model: lw_encrl`` in an ESPnet ASR training config. The config's frontend / specaug /
normalize / encoder / ctc describe the **student** (a stock ``ConformerEncoder`` with fewer
``num_blocks`` and its linear CTC head); ``model_conf`` names the reference and the loss::

    model: lw_encrl
    model_conf:
        reference_config: exp/asr_reference/config.yaml   # ESPnet config of the trained reference
        reference_model: exp/asr_reference/valid.loss.ave.pth
        alignment:                    # see espnet_lw.losses.config (omitted: clip + mse, their defaults)
            clip: {weight: 1.0, level: utterance, temperature: 0.07}
            mse: {weight: 1.0, target: ctc_logp}                  # encoder (the default) | ctc_logp | both
            layers: {weight: 1.0}     # intermediate blocks too: needs init_from_reference, runs the reference
        init_from_reference: null     # null | first | last | every_other | [0, 4, 8, ...]
        ctc_weight_in_encrl: 0.0      # > 0 adds the student's CTC loss on the transcripts
        reference_cache: null         # dir(s) written by espnet_lw.bin.dump_reference_targets
        cache_length_tolerance: 2     # cached vs. in-batch output lengths may differ by this much

The reference is built with ESPnet's own model code from its ``config.yaml``, loaded strictly
(every key present, nothing extra), frozen, always in eval mode and run under
``torch.no_grad()``. It is held outside ``nn.Module``'s registry, so it is in neither
``state_dict()`` (``<N>epoch.pth`` holds the student only) nor ``parameters()`` (the
optimizer never sees it); :meth:`EncRLModel._apply` moves it along with ``model.to(device)``.

The reference sees the clean waveform through its own frontend + normalize; the student sees
its frontend -> SpecAugment (training only) -> normalize. When a batch carries cached reference
outputs (``ref_enc`` / ``ref_logp``, read by ESPnet's data loader from ark/scp), they replace
the reference's forward pass.

The fine-tune stage then starts a ``model: lw_ctc`` model from the EncRL checkpoint with
``--init_param <encrl.pth>:::alignment`` (everything except the projection heads /
temperature of the loss).
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Tuple, Union

import torch

from espnet_lw.utils.quiet import import_quietly

import_quietly("espnet2.asr.espnet_model")  # offline nltk + no Flash Attention notice on stdout

from espnet2.asr.espnet_model import ESPnetASRModel  # noqa: E402
from espnet2.torch_utils.device_funcs import force_gatherable  # noqa: E402

from espnet_lw.losses.alignment import AlignmentLoss  # noqa: E402
from espnet_lw.losses.config import AlignmentConfig, AlignmentLike  # noqa: E402
from espnet_lw.losses.distill import fit_time as _fit_time  # noqa: E402
from espnet_lw.models.blocks import (  # noqa: E402
    BlocksSpec,
    block_outputs,
    check_init_state,
    reference_init_state,
    select_blocks,
)
from espnet_lw.models.linear_ctc import ctc_only_kwargs, own_stats  # noqa: E402
from espnet_lw.models.loading import load_reference  # noqa: E402
from espnet_lw.models.targets import check_reference_cache  # noqa: E402
from espnet_lw.utils.cli import ConfigError, UserError  # noqa: E402

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ the model
class EncRLModel(ESPnetASRModel):
    """Student encoder + linear CTC head trained to reproduce a frozen reference encoder."""

    def __init__(
        self,
        *args,
        reference_config: Optional[str] = None,
        reference_model: Optional[str] = None,
        alignment: AlignmentLike = None,
        init_from_reference: BlocksSpec = None,
        ctc_weight_in_encrl: float = 0.0,
        reference_cache: Union[None, str, List[str]] = None,
        cache_length_tolerance: int = 2,
        **kwargs,
    ):
        kwargs = ctc_only_kwargs("lw_encrl", kwargs, "use model_conf.ctc_weight_in_encrl, not ctc_weight")
        kwargs.setdefault("report_cer", False)
        super().__init__(*args, **kwargs)
        if not reference_config or not reference_model:
            raise UserError(
                "model 'lw_encrl' needs model_conf.reference_config and model_conf.reference_model",
                fix="point them at the reference exp dir's config.yaml and valid.loss.ave.pth",
            )
        if self.encoder is None:
            raise UserError("model 'lw_encrl' needs a student encoder")
        if ctc_weight_in_encrl < 0:
            raise UserError(f"ctc_weight_in_encrl must be >= 0, got {ctc_weight_in_encrl}")
        self.ctc_weight_in_encrl = float(ctc_weight_in_encrl)
        self.cache_length_tolerance = int(cache_length_tolerance)
        self.reference_config = str(reference_config)
        self.reference_model = str(reference_model)

        reference, _ = load_reference(reference_config, reference_model)
        # a plain attribute: not a registered submodule -> not in state_dict()/parameters()/train()
        self.__dict__["_reference"] = reference

        try:
            config = AlignmentConfig.coerce(alignment) if alignment else AlignmentConfig.default()
        except ConfigError as e:
            raise UserError(f"model_conf.{e.what}", fix="see espnet_lw/losses/config.py for the keys and values") from e
        self.alignment = AlignmentLoss(config, self.encoder.output_size(), reference.encoder.output_size())
        self._check_reference(init_from_reference)

        if reference_cache:
            need = ["enc"]
            for d in [reference_cache] if isinstance(reference_cache, str) else reference_cache:
                check_reference_cache(d, reference_config, reference_model, need)

        self.init_blocks: Optional[List[int]] = None
        if init_from_reference is not None:
            n_ref = len(reference.encoder.encoders)
            n_stu = len(self.encoder.encoders)
            try:
                self.init_blocks = select_blocks(init_from_reference, n_ref, n_stu)
            except UserError as e:
                raise UserError(f"model_conf.init_from_reference: {e.what}") from e
            init = reference_init_state(reference.state_dict(), self.init_blocks)
            check_init_state(init, self.state_dict(), self.reference_config)
            self.load_state_dict(init, strict=False)
            logger.info("student initialised from reference blocks %s", self.init_blocks)
        #: (student block, reference block) pairs of the intermediate-block term: every student block but
        #: the last (the encoder output is the other terms' business), with the block it started from
        self.layer_pairs: List[Tuple[int, int]] = []
        if self.alignment.needs_layers:
            if self.init_blocks is None:
                raise UserError("model_conf.alignment.layers pairs each student block with the reference block it "
                                "starts from: it needs model_conf.init_from_reference",
                                fix="set init_from_reference (e.g. every_other), or drop alignment.layers")
            if len(self.init_blocks) < 2:
                raise UserError("model_conf.alignment.layers needs a student of at least 2 blocks (a 1-block "
                                "student has no intermediate block)", fix="drop alignment.layers for this student")
            self.layer_pairs = [(k, m) for k, m in enumerate(self.init_blocks[:-1])]
            if reference_cache:
                logger.warning("alignment.layers: the reference runs on the fly for the intermediate blocks; "
                               "its cached targets are not read")

    # -- the frozen reference -----------------------------------------------------------------
    @property
    def reference(self) -> ESPnetASRModel:
        """The frozen reference model (not a submodule)."""
        return self.__dict__["_reference"]

    def train(self, mode: bool = True):
        super().train(mode)
        ref = self.__dict__.get("_reference")
        if ref is not None:
            ref.eval()  # always: no dropout, no SpecAugment in the reference
        return self

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        ref = self.__dict__.get("_reference")
        if ref is not None:
            ref._apply(fn, *args, **kwargs)
            ref.requires_grad_(False)
        return self

    def _check_reference(self, init_from_reference: BlocksSpec) -> None:
        ref, where = self.reference, self.reference_config
        if (self.alignment.needs_logp or init_from_reference is not None) and list(ref.token_list) != list(
            self.token_list
        ):
            raise UserError(
                f"the reference's token list ({len(ref.token_list)} tokens) differs from the student's "
                f"({len(self.token_list)}): CTC log-posteriors / heads cannot be compared",
                where,
                "train the student with the reference's token_list (same BPE model)",
            )
        # frame rate: hop length of the features and the encoder's subsampling must agree
        s_hop = getattr(self.frontend, "hop_length", None)
        r_hop = getattr(ref.frontend, "hop_length", None)
        if s_hop is not None and r_hop is not None and s_hop != r_hop:
            raise UserError(f"the reference's frontend hop_length is {r_hop}, the student's {s_hop}", where,
                            "use the reference's frontend_conf for the student")
        s_sr = getattr(getattr(self.frontend, "logmel", None), "mel_options", {}).get("sr")
        r_sr = getattr(getattr(ref.frontend, "logmel", None), "mel_options", {}).get("sr")
        if s_sr is not None and r_sr is not None and s_sr != r_sr:
            raise UserError(f"the reference's sampling rate is {r_sr}, the student's {s_sr}", where,
                            "use the reference's frontend_conf (fs) for the student")
        s_sub = type(getattr(self.encoder, "embed", None)).__name__
        r_sub = type(getattr(ref.encoder, "embed", None)).__name__
        if s_sub != r_sub:
            raise UserError(f"the reference's encoder input layer is {r_sub}, the student's {s_sub} "
                            "(different subsampling -> different frame rates)", where,
                            "use the reference's encoder_conf.input_layer for the student")

    # -- forward --------------------------------------------------------------------------------
    def _reference_targets(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        ref_enc: Optional[torch.Tensor],
        ref_enc_lengths: Optional[torch.Tensor],
        ref_logp: Optional[torch.Tensor],
    ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor], torch.Tensor]:
        ref = self.reference
        need_logp = self.alignment.needs_logp
        with torch.no_grad():
            if ref_enc is None:
                first = next(ref.parameters(), None)
                if first is not None and first.device != speech.device:
                    ref.to(speech.device)
                ref.eval()
                r_enc, r_lens = ref.encode(speech, speech_lengths)
                if isinstance(r_enc, tuple):
                    r_enc = r_enc[0]
            else:
                r_enc, r_lens = ref_enc.to(speech.device), ref_enc_lengths.to(speech.device)
            r_logp = None
            if need_logp:
                if ref_logp is not None:
                    r_logp = ref_logp.to(speech.device)
                else:
                    r_logp = ref.ctc.log_softmax(r_enc.to(next(ref.ctc.parameters()).dtype))
        return r_enc, r_logp, r_lens

    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: Optional[torch.Tensor] = None,
        text_lengths: Optional[torch.Tensor] = None,
        ref_enc: Optional[torch.Tensor] = None,
        ref_enc_lengths: Optional[torch.Tensor] = None,
        ref_logp: Optional[torch.Tensor] = None,
        ref_logp_lengths: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """EncRL loss of a batch: ``(loss, stats, weight)`` as ESPnet's trainer expects."""
        batch_size = speech.shape[0]
        pairs = self.layer_pairs
        with block_outputs(self.encoder, [k for k, _ in pairs]) as s_blocks:
            enc, enc_lens = self.encode(speech, speech_lengths)
        if isinstance(enc, tuple):
            enc = enc[0]
        if pairs:  # the intermediate blocks' targets come from running the reference, not from a cache
            ref_enc = ref_enc_lengths = ref_logp = None
        with block_outputs(self.reference.encoder, [m for _, m in pairs]) as r_blocks:
            r_enc, r_logp, r_lens = self._reference_targets(speech, speech_lengths, ref_enc, ref_enc_lengths, ref_logp)
        t = enc.size(1)
        if ref_enc is None:
            if not torch.equal(enc_lens.cpu(), r_lens.cpu()):
                raise RuntimeError(
                    "EncRL: student and reference encoders give different output lengths "
                    f"(student {enc_lens.tolist()}, reference {r_lens.tolist()}); they need the same "
                    "frontend hop_length and encoder input_layer (subsampling)"
                )
            lens = enc_lens
        else:
            # ESPnet's conv2d subsampling counts output frames from the *padded* batch length, so
            # a cached utterance (computed alone) may be a frame shorter or longer than the same
            # utterance in a training batch: compare the common frames only.
            r_lens = r_lens.to(enc_lens.device)
            diff = int((enc_lens - r_lens).abs().max())
            if diff > self.cache_length_tolerance:
                raise RuntimeError(
                    "EncRL: the cached ref_enc does not fit this data: student output lengths "
                    f"{enc_lens.tolist()}, cached {r_lens.tolist()} (utterances {kwargs.get('utt_id')}); "
                    "was the cache dumped from another data dir or another reference?"
                )
            lens = torch.minimum(enc_lens, r_lens)
        r_enc = _fit_time(r_enc, t)
        if r_logp is not None:
            r_logp = _fit_time(r_logp, t)
        s_logp = self.ctc.log_softmax(enc) if self.alignment.needs_logp else None
        loss, stats = self.alignment(enc, r_enc, lens, s_logp, r_logp,
                                     student_layers=[s_blocks[k] for k, _ in pairs] or None,
                                     reference_layers=[r_blocks[m] for _, m in pairs] or None)
        if self.ctc_weight_in_encrl > 0:
            if text is None or text_lengths is None:
                raise UserError("ctc_weight_in_encrl > 0 needs the transcripts (text) in the batch")
            loss_ctc, _ = self._calc_ctc_loss(enc, enc_lens, text, text_lengths)
            loss = loss + self.ctc_weight_in_encrl * loss_ctc
            stats["loss_ctc"] = loss_ctc
        stats["loss"] = loss
        loss, stats, weight = force_gatherable((loss, own_stats(stats), batch_size), loss.device)
        return loss, stats, weight
