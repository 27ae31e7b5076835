"""Logit knowledge distillation: a student's CTC posteriors pulled towards a reference's.

:func:`kd_loss` is the frame-level KL divergence between temperature-softened posteriors, on padded
``(B, T, V)`` log-probabilities with per-utterance lengths::

    T^2 * sum over valid frames t of KL( softmax(r_t / T) || softmax(s_t / T) ),  divided by B

Inputs are log-posteriors (``log_softmax`` of the CTC head); dividing them by ``T`` and taking
``log_softmax`` again is the same as softening the logits, since a per-frame constant cancels.
The sum over an utterance's frames divided by the batch size is the normalisation of ESPnet's CTC
loss, so ``weight`` in ``CTC + weight * KD`` weighs two numbers of one scale.
The configuration (weight, temperature) lives in :class:`espnet_lw.losses.config.KDConfig`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from espnet_lw.losses.alignment import length_mask


def kd_loss(student_logp: torch.Tensor, reference_logp: torch.Tensor, lens: torch.Tensor,
            temperature: float = 1.0) -> torch.Tensor:
    """``T^2 * KL(p_ref^T || p_student^T)`` summed over the valid frames, averaged over utterances.

    ``student_logp`` / ``reference_logp``: ``(B, T, V)`` log-posteriors with the same ``T`` and
    ``V`` (the caller fits the time axes); ``lens``: ``(B,)`` valid frames per utterance. The
    reference side gets no gradient. Padding frames count for nothing.
    """
    if student_logp.shape != reference_logp.shape:
        raise ValueError(f"student and reference posteriors differ in shape: {tuple(student_logp.shape)} "
                         f"vs {tuple(reference_logp.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    t = float(temperature)
    s = F.log_softmax(student_logp.float() / t, dim=-1)
    r = F.log_softmax(reference_logp.detach().float() / t, dim=-1)
    kl = (r.exp() * (r - s)).sum(-1)  # (B, T): KL per frame
    mask = length_mask(lens.to(kl.device), kl.size(1))
    kl = kl.masked_fill(~mask, 0.0)
    return kl.sum() * (t * t) / max(1, student_logp.size(0))


def fit_time(x: torch.Tensor, t: int) -> torch.Tensor:
    """Cut or zero-pad the time axis (dim 1) of ``x`` to ``t`` frames."""
    if x.size(1) >= t:
        return x[:, :t]
    return F.pad(x, (0, 0, 0, t - x.size(1)))
