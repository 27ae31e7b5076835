"""Losses that pull a student encoder's output towards a frozen reference encoder's output.

Two families, both on padded ``(B, T, D)`` tensors with per-utterance lengths:

* :func:`clip_loss` -- CLIP-style contrastive loss: a similarity matrix between student rows and
  reference rows, cross-entropy towards the diagonal in both directions (student->reference and
  reference->student), averaged. Rows are either one time-averaged vector per utterance
  (``level="utterance"``: ``B x B`` logits) or single frames (``level="frame"``: every valid
  frame of the batch against every other, ``N x N`` logits).
* :func:`mse_loss` -- mean squared error over the valid frames (mean over frames and dims).

:class:`AlignmentLoss` combines them as an :class:`~espnet_lw.losses.config.AlignmentConfig`
(read from the ``alignment`` key of an EncRL model's ``model_conf``) says::

    alignment:
      clip: {weight: 1.0, level: utterance, temperature: 0.07, learnable_temperature: false,
             normalize: false, projection: false, proj_dim: null, max_frames: 4096}
      mse:  {weight: 1.0, target: encoder}     # encoder | ctc_logp | both

A term is active when its key is present and its weight is > 0 (keys and defaults:
:mod:`espnet_lw.losses.config`).
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F

from espnet_lw.losses.config import AlignmentConfig, AlignmentLike, ClipConfig, LayersConfig, MseConfig


def length_mask(lens: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(B, max_len)`` bool mask, True on the valid frames."""
    return torch.arange(max_len, device=lens.device)[None, :] < lens[:, None]


class LearnableTemperature(torch.nn.Module):
    """A learnable softmax temperature, stored as ``log(1 / T)`` as in CLIP.

    The logit scale ``1 / T`` is clamped to at most ``max_scale`` (CLIP uses 100), so the
    temperature cannot collapse towards 0 and blow up the logits.
    """

    def __init__(self, init: float = 0.07, max_scale: float = 100.0):
        super().__init__()
        if init <= 0:
            raise ValueError(f"temperature must be > 0, got {init}")
        self.max_scale = float(max_scale)
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(1.0 / init)))

    def scale(self) -> torch.Tensor:
        """Logit scale ``1 / T`` (clamped)."""
        return self.log_scale.exp().clamp(max=self.max_scale)

    def forward(self) -> torch.Tensor:
        """The current temperature ``T``."""
        return 1.0 / self.scale()


TemperatureLike = Union[float, LearnableTemperature]


def _logit_scale(temperature: TemperatureLike, ref: torch.Tensor) -> torch.Tensor:
    if isinstance(temperature, LearnableTemperature):
        return temperature.scale().to(ref.dtype)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return torch.tensor(1.0 / float(temperature), dtype=ref.dtype, device=ref.device)


def utterance_means(x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """Time average of each utterance over its valid frames: ``(B, T, D) -> (B, D)``."""
    mask = length_mask(lens, x.size(1)).to(x.dtype).unsqueeze(-1)
    return (x * mask).sum(1) / lens.clamp(min=1).to(x.dtype).unsqueeze(-1)


def valid_frames(
    x: torch.Tensor,
    lens: torch.Tensor,
    index: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The valid frames of the batch, stacked: ``(B, T, D) -> (N, D)`` (optionally ``[index]``)."""
    frames = x[length_mask(lens, x.size(1))]
    return frames if index is None else frames[index]


def symmetric_cross_entropy(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor,
                            drop: Optional[torch.Tensor] = None) -> torch.Tensor:
    """CLIP loss for rows ``a`` (M, D) against rows ``b`` (M, D); the i-th rows are positives.
    ``drop``: a symmetric ``(M, M)`` bool mask of pairs left out of the negatives (never the diagonal)."""
    logits = scale * (a @ b.t())
    if drop is not None:
        logits = logits.masked_fill(drop, float("-inf"))
    target = torch.arange(a.size(0), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def neighbour_pairs(lens: torch.Tensor, max_len: int, within: int,
                    index: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``(N, N)`` bool: the pairs of valid frames (as :func:`valid_frames` stacks them, optionally
    ``[index]``) that lie in the same utterance at most ``within`` frames apart, the diagonal excluded."""
    mask = length_mask(lens, max_len)
    b, t = mask.shape
    utt = torch.arange(b, device=lens.device).unsqueeze(1).expand(b, t)[mask]
    pos = torch.arange(t, device=lens.device).unsqueeze(0).expand(b, t)[mask]
    if index is not None:
        utt, pos = utt[index], pos[index]
    near = (utt.unsqueeze(1) == utt.unsqueeze(0)) & ((pos.unsqueeze(1) - pos.unsqueeze(0)).abs() <= within)
    return near & ~torch.eye(len(utt), dtype=torch.bool, device=lens.device)


def clip_loss(
    student: torch.Tensor,
    reference: torch.Tensor,
    s_lens: torch.Tensor,
    r_lens: Optional[torch.Tensor] = None,
    level: str = "utterance",
    temperature: TemperatureLike = 0.07,
    normalize: bool = False,
    max_frames: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    exclude_neighbours: int = 0,
) -> torch.Tensor:
    """Symmetric contrastive (CLIP) loss between student and reference encoder outputs.

    Args:
        student: ``(B, T, D)`` student encoder output (padded).
        reference: ``(B, T', D)`` reference encoder output (same ``D``; project first if not).
        s_lens, r_lens: ``(B,)`` valid lengths (``r_lens`` defaults to ``s_lens``).
        level: ``"utterance"`` (time-averaged rows, ``B x B`` logits) or ``"frame"``
            (every valid student frame picks its own reference frame among all valid frames of
            the batch, ``N x N`` logits; needs ``T == T'`` and equal lengths).
        temperature: a float or a :class:`LearnableTemperature`; logits are ``sim / T``.
        normalize: L2-normalise the rows first (cosine similarity).
        max_frames: ``level="frame"`` only: use a random subset of at most this many frames
            (memory is quadratic in N); drawn from ``generator`` (deterministic when seeded).
        exclude_neighbours: ``level="frame"`` only: a frame's negatives leave out the frames of its
            own utterance at most this many frames away (near-copies of the positive at 40 ms a frame).
    Returns:
        scalar loss (0-dim tensor).
    """
    if r_lens is None:
        r_lens = s_lens
    drop = None
    if student.size(-1) != reference.size(-1):
        raise ValueError(
            f"clip_loss: student dim {student.size(-1)} != reference dim {reference.size(-1)}; "
            "use a projection head"
        )
    if level == "utterance":
        a = utterance_means(student, s_lens)
        b = utterance_means(reference, r_lens)
    elif level == "frame":
        if not torch.equal(s_lens.cpu(), r_lens.cpu()):
            raise ValueError(
                f"clip_loss(level='frame'): student and reference lengths differ "
                f"({s_lens.tolist()} vs {r_lens.tolist()})"
            )
        n = int(s_lens.sum())
        index = None
        if max_frames is not None and n > max_frames:
            index = torch.randperm(n, generator=generator)[:max_frames].sort().values
            index = index.to(student.device)
        a = valid_frames(student, s_lens, index)
        b = valid_frames(reference, r_lens, index)
        if exclude_neighbours > 0:
            drop = neighbour_pairs(s_lens, student.size(1), exclude_neighbours, index)
    else:
        raise ValueError(f"clip_loss: level must be 'utterance' or 'frame', got {level!r}")
    if normalize:
        a = F.normalize(a, dim=-1)
        b = F.normalize(b, dim=-1)
    return symmetric_cross_entropy(a, b, _logit_scale(temperature, a), drop)


def mse_loss(student: torch.Tensor, reference: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the valid frames (mean over frames and feature dims)."""
    if student.shape != reference.shape:
        raise ValueError(
            f"mse_loss: shapes differ: student {tuple(student.shape)} vs reference {tuple(reference.shape)}"
        )
    mask = length_mask(lens, student.size(1)).to(student.dtype).unsqueeze(-1)
    sq = (student - reference.to(student.dtype)) ** 2 * mask
    denom = mask.sum() * student.size(-1)
    return sq.sum() / denom.clamp(min=1)


def layers_loss(student: List[torch.Tensor], reference: List[torch.Tensor], lens: torch.Tensor) -> torch.Tensor:
    """Mean over block pairs of the MSE between layer-normalised (no affine) hidden sequences, valid
    frames only: each frame's scale and offset do not count, only its direction and shape."""
    if not student or len(student) != len(reference):
        raise ValueError(f"layers_loss: {len(student)} student and {len(reference)} reference blocks")
    total = student[0].new_zeros(())
    for s, r in zip(student, reference):
        s = F.layer_norm(s, s.shape[-1:])
        r = F.layer_norm(r.to(s.dtype), r.shape[-1:])
        total = total + mse_loss(s, r, lens)
    return total / len(student)


class AlignmentLoss(torch.nn.Module):
    """Weighted sum of a CLIP term, an MSE term and an intermediate-block term, configured by an
    :class:`AlignmentConfig`.

    The configuration (or the YAML mapping it is read from: see :mod:`espnet_lw.losses.config` for
    the keys and their defaults) says which terms are active. CLIP gets Linear heads
    student->``proj_dim`` and reference->``proj_dim`` with ``projection: true`` or when the two
    widths differ; the ``encoder`` MSE target compares the student encoder output with the
    reference's through a student->reference Linear when the widths differ.

    Call it with the encoder outputs (and, for the ``ctc_logp`` target, the two heads'
    log-posteriors, and for ``layers`` the paired blocks' outputs); it returns ``(total, stats)`` with
    ``loss_clip``, ``temperature``, ``loss_mse`` (``loss_mse_enc`` / ``loss_mse_logp`` per target),
    ``loss_layers``. (Not ``clip``: ESPnet's
    trainer reports its gradient-clipping threshold under that name.)
    """

    def __init__(self, conf: AlignmentLike, student_dim: int, reference_dim: int):
        super().__init__()
        self.config = AlignmentConfig.coerce(conf)
        #: the active terms (None: not configured or weight 0)
        self.clip_conf: Optional[ClipConfig] = self.config.active_clip
        self.mse_conf: Optional[MseConfig] = self.config.active_mse
        self.layers_conf: Optional[LayersConfig] = self.config.active_layers
        self.temperature: Optional[LearnableTemperature] = None
        self.proj_student: Optional[torch.nn.Module] = None
        self.proj_reference: Optional[torch.nn.Module] = None
        self.mse_proj: Optional[torch.nn.Module] = None
        self._generator: Optional[torch.Generator] = None

        clip = self.clip_conf
        if clip is not None:
            if clip.learnable_temperature:
                self.temperature = LearnableTemperature(float(clip.temperature), float(clip.max_scale))
            if clip.projection or student_dim != reference_dim:
                dim = int(clip.proj_dim or reference_dim)
                self.proj_student = torch.nn.Linear(student_dim, dim)
                self.proj_reference = torch.nn.Linear(reference_dim, dim)
        mse = self.mse_conf
        if mse is not None and mse.uses_encoder and student_dim != reference_dim:
            self.mse_proj = torch.nn.Linear(student_dim, reference_dim)

    # -- what the caller must provide ---------------------------------------------------------
    @property
    def needs_logp(self) -> bool:
        """True when the MSE term compares CTC log-posteriors."""
        return self.mse_conf is not None and self.mse_conf.uses_logp

    @property
    def needs_layers(self) -> bool:
        """True when the intermediate-block term is active (the caller pairs the blocks)."""
        return self.layers_conf is not None

    @property
    def needs_encoder(self) -> bool:
        """True when a term compares encoder outputs."""
        return self.clip_conf is not None or (self.mse_conf is not None and self.mse_conf.uses_encoder)

    def current_temperature(self) -> Optional[float]:
        if self.clip_conf is None:
            return None
        if self.temperature is not None:
            return float(self.temperature().detach())
        return float(self.clip_conf.temperature)

    def set_generator(self, generator: Optional[torch.Generator]) -> None:
        """Generator for the frame subsampling of ``level: frame`` (default: torch's global RNG)."""
        self._generator = generator

    def forward(
        self,
        student: torch.Tensor,
        reference: Optional[torch.Tensor],
        lens: torch.Tensor,
        student_logp: Optional[torch.Tensor] = None,
        reference_logp: Optional[torch.Tensor] = None,
        student_layers: Optional[List[torch.Tensor]] = None,
        reference_layers: Optional[List[torch.Tensor]] = None,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        total = student.new_zeros(())
        stats: Dict[str, torch.Tensor] = {}
        if self.clip_conf is not None:
            a, b = student, reference
            if self.proj_student is not None:
                a, b = self.proj_student(a), self.proj_reference(b)
            temp = self.temperature if self.temperature is not None else float(self.clip_conf.temperature)
            c = clip_loss(
                a, b, lens, lens,
                level=self.clip_conf.level,
                temperature=temp,
                normalize=self.clip_conf.normalize,
                max_frames=self.clip_conf.max_frames,
                generator=self._generator,
                exclude_neighbours=self.clip_conf.exclude_neighbours,
            )
            total = total + float(self.clip_conf.weight) * c
            stats["loss_clip"] = c.detach()
            stats["temperature"] = torch.tensor(self.current_temperature())
        if self.mse_conf is not None:
            m = student.new_zeros(())
            if self.mse_conf.uses_encoder:
                a = self.mse_proj(student) if self.mse_proj is not None else student
                m_enc = mse_loss(a, reference, lens)
                stats["loss_mse_enc"] = m_enc.detach()
                m = m + m_enc
            if self.mse_conf.uses_logp:
                if student_logp is None or reference_logp is None:
                    raise ValueError("alignment.mse.target uses ctc_logp but no log-posteriors were given")
                m_logp = mse_loss(student_logp, reference_logp, lens)
                stats["loss_mse_logp"] = m_logp.detach()
                m = m + m_logp
            total = total + float(self.mse_conf.weight) * m
            stats["loss_mse"] = m.detach()
        if self.layers_conf is not None:
            if not student_layers or not reference_layers:
                raise ValueError("alignment.layers is active but no block outputs were given")
            lay = layers_loss(student_layers, reference_layers, lens)
            total = total + float(self.layers_conf.weight) * lay
            stats["loss_layers"] = lay.detach()
        return total, stats
