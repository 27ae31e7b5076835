"""Known values and invariances of the EncRL alignment losses (tiny tensors, CPU)."""

from __future__ import annotations

import math

import pytest
import torch

from espnet_lw.losses.alignment import (
    AlignmentLoss,
    LearnableTemperature,
    clip_loss,
    layers_loss,
    mse_loss,
    utterance_means,
)

torch.set_num_threads(1)


def _orthogonal_batch(b: int = 4, t: int = 3, d: int = 4):
    """Utterance i is ``t`` copies of the i-th unit vector."""
    x = torch.eye(d)[:b].unsqueeze(1).repeat(1, t, 1)
    return x, torch.full((b,), t)


def test_identical_orthogonal_small_temperature_gives_zero():
    x, lens = _orthogonal_batch()
    for normalize in (False, True):
        loss = clip_loss(x, x.clone(), lens, lens, level="utterance", temperature=0.01, normalize=normalize)
        assert loss.item() < 1e-6
    # frame level: frames of one utterance are identical, so they are not distinguishable;
    # one frame per utterance makes them orthogonal again
    x1, l1 = _orthogonal_batch(t=1)
    assert clip_loss(x1, x1.clone(), l1, l1, level="frame", temperature=0.01).item() < 1e-6


def test_hand_computed_2x2():
    s = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # (B=2, T=1, D=2)
    r = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]]])
    lens = torch.tensor([1, 1])
    # logits = s @ r^T = [[1, 1], [0, 1]]; rows: log 2, log(1 + e^-1); columns: log(1 + e^-1), log 2
    expected = 0.5 * (math.log(2.0) + math.log(1.0 + math.exp(-1.0)))
    got = clip_loss(s, r, lens, lens, temperature=1.0)
    assert got.item() == pytest.approx(expected, abs=1e-6)
    # temperature 0.5 doubles the logits: [[2, 2], [0, 2]]
    expected_half = 0.5 * (math.log(2.0) + math.log(1.0 + math.exp(-2.0)))
    assert clip_loss(s, r, lens, lens, temperature=0.5).item() == pytest.approx(expected_half, abs=1e-6)


def test_symmetry():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(3, 5, 6, generator=g)
    r = torch.randn(3, 5, 6, generator=g)
    lens = torch.tensor([5, 3, 4])
    for level in ("utterance", "frame"):
        a = clip_loss(s, r, lens, lens, level=level, temperature=0.3)
        b = clip_loss(r, s, lens, lens, level=level, temperature=0.3)
        assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_masking_respects_lengths():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(3, 5, 6, generator=g)
    r = torch.randn(3, 5, 6, generator=g)
    lens = torch.tensor([5, 2, 4])
    s2, r2 = s.clone(), r.clone()
    s2[1, 2:] = 1e3  # garbage in the padding
    r2[2, 4:] = -1e3
    for level in ("utterance", "frame"):
        a = clip_loss(s, r, lens, lens, level=level, temperature=0.5)
        b = clip_loss(s2, r2, lens, lens, level=level, temperature=0.5)
        assert a.item() == pytest.approx(b.item(), rel=1e-6)
    assert mse_loss(s, r, lens).item() == pytest.approx(mse_loss(s2, r2, lens).item(), rel=1e-6)
    # the utterance average covers exactly the valid frames
    torch.testing.assert_close(utterance_means(s2, lens)[1], s[1, :2].mean(0))


def test_frame_clip_can_leave_a_frames_neighbours_out_of_its_negatives():
    from espnet_lw.losses.alignment import neighbour_pairs

    # utterance 0: frames 0-2, utterance 1: frame 0 (of 3 padded); stacked valid frames 0,1,2 | 3
    lens = torch.tensor([3, 1])
    near = neighbour_pairs(lens, 3, within=1)
    assert near.tolist() == [[False, True, False, False], [True, False, True, False],
                             [False, True, False, False], [False, False, False, False]]
    assert neighbour_pairs(lens, 3, within=2)[0, 2] and not neighbour_pairs(lens, 3, within=2)[0, 3]
    # with a frame subset, the pairs follow the frames kept: frames 0, 2, 3
    assert neighbour_pairs(lens, 3, within=2, index=torch.tensor([0, 2, 3])).tolist() == \
        [[False, True, False], [True, False, False], [False, False, False]]
    # identical frames inside an utterance are indistinguishable negatives: leaving them out makes the
    # task the utterance-level one again (here exactly: every frame row is its utterance's unit vector)
    x, lens = _orthogonal_batch(b=2, t=3, d=2)
    plain = clip_loss(x, x.clone(), lens, level="frame", temperature=1.0)
    kept = clip_loss(x, x.clone(), lens, level="frame", temperature=1.0, exclude_neighbours=2)
    assert plain.item() == pytest.approx(math.log(3 * math.e + 3) - 1, abs=1e-5)
    assert kept.item() == pytest.approx(math.log(math.e + 3) - 1, abs=1e-5)
    # the drop mask never touches the positives: the loss stays finite and differentiable
    s = torch.randn(2, 4, 3, requires_grad=True)
    loss = clip_loss(s, torch.randn(2, 4, 3), torch.tensor([4, 2]), level="frame", exclude_neighbours=5)
    loss.backward()
    assert math.isfinite(loss.item()) and torch.isfinite(s.grad).all()


def test_mse_known_value():
    s = torch.zeros(2, 2, 3)
    r = torch.ones(2, 2, 3)
    r[1, 1] = 100.0  # padding of utterance 1
    assert mse_loss(s, r, torch.tensor([2, 1])).item() == pytest.approx(1.0)
    r2 = torch.zeros(2, 2, 3)
    r2[0, 0, 0] = 3.0  # one squared error of 9 over 3 frames x 3 dims
    assert mse_loss(s, r2, torch.tensor([2, 1])).item() == pytest.approx(1.0)


def test_layers_loss_known_values_and_invariances():
    g = torch.Generator().manual_seed(0)
    r = [torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)]
    lens = torch.tensor([3, 2])
    # each frame's scale and offset do not count (layer norm without affine), padding does not count
    scaled = [3.0 * x + 1.5 for x in r]
    scaled[0][1, 2] = 1e3
    assert layers_loss(scaled, r, lens).item() == pytest.approx(0.0, abs=1e-6)
    # known value: one block matches, the other has every normalised frame negated -> 4 per value, mean 2
    assert layers_loss([r[0], -r[1]], r, lens).item() == pytest.approx(2.0, rel=1e-4)
    with pytest.raises(ValueError, match="1 student and 2 reference blocks"):
        layers_loss(r[:1], r, lens)
    loss = AlignmentLoss({"mse": {}, "layers": {"weight": 0.5}}, 4, 4)
    assert loss.needs_layers
    s = torch.randn(2, 3, 4, generator=g)
    total, stats = loss(s, r[0], lens, student_layers=[-r[1]], reference_layers=[r[1]])
    assert stats["loss_layers"].item() == pytest.approx(4.0, rel=1e-4)
    assert total.item() == pytest.approx(mse_loss(s, r[0], lens).item() + 2.0, rel=1e-4)
    with pytest.raises(ValueError, match="no block outputs"):
        loss(s, r[0], lens)


def test_frame_subsampling_is_deterministic_and_bounded():
    g = torch.Generator().manual_seed(2)
    s = torch.randn(2, 30, 4, generator=g)
    r = torch.randn(2, 30, 4, generator=g)
    lens = torch.tensor([30, 20])
    a = clip_loss(s, r, lens, level="frame", max_frames=10, generator=torch.Generator().manual_seed(7))
    b = clip_loss(s, r, lens, level="frame", max_frames=10, generator=torch.Generator().manual_seed(7))
    assert a.item() == b.item()
    full = clip_loss(s, r, lens, level="frame")
    same = clip_loss(s, r, lens, level="frame", max_frames=50)
    assert full.item() == same.item()
    with pytest.raises(ValueError, match="lengths differ"):
        clip_loss(s, r, lens, torch.tensor([30, 19]), level="frame")


def test_learnable_temperature_gradient_and_clamp():
    t = LearnableTemperature(0.07)
    assert t().item() == pytest.approx(0.07, rel=1e-5)
    x, lens = _orthogonal_batch()
    y = x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    clip_loss(x, y, lens, temperature=t).backward()
    assert t.log_scale.grad is not None and t.log_scale.grad.abs().item() > 0
    tiny = LearnableTemperature(0.001)  # 1/T = 1000 is clamped to CLIP's 100
    assert tiny().item() == pytest.approx(0.01, rel=1e-5)


def test_alignment_loss_config():
    loss = AlignmentLoss({"clip": {"weight": 1.0}, "mse": {"weight": 2.0, "target": "both"}}, 8, 8)
    assert loss.proj_student is None and loss.mse_proj is None
    assert loss.needs_logp and loss.needs_encoder
    g = torch.Generator().manual_seed(4)
    s, r = torch.randn(2, 3, 8, generator=g), torch.randn(2, 3, 8, generator=g)
    sl, rl = torch.randn(2, 3, 5, generator=g).log_softmax(-1), torch.randn(2, 3, 5, generator=g).log_softmax(-1)
    lens = torch.tensor([3, 2])
    total, stats = loss(s, r, lens, sl, rl)
    expected = clip_loss(s, r, lens, temperature=0.07) + 2.0 * (mse_loss(s, r, lens) + mse_loss(sl, rl, lens))
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert set(stats) == {"loss_clip", "temperature", "loss_mse", "loss_mse_enc", "loss_mse_logp"}
    # widths differ -> projection heads appear automatically
    proj = AlignmentLoss({"clip": {}, "mse": {"target": "encoder"}}, 6, 8)
    assert proj.proj_student.in_features == 6 and proj.proj_reference.in_features == 8
    assert proj.mse_proj.in_features == 6 and proj.mse_proj.out_features == 8
    total, _ = proj(torch.randn(2, 3, 6), r, lens)
    total.backward()
    assert proj.proj_student.weight.grad is not None
    with pytest.raises(ValueError, match="unknown keys"):
        AlignmentLoss({"clip": {"temprature": 0.1}}, 8, 8)
    with pytest.raises(ValueError, match="no log-posteriors"):
        AlignmentLoss({"mse": {"target": "ctc_logp"}}, 8, 8)(s, r, lens)
    learn = AlignmentLoss({"clip": {"learnable_temperature": True, "temperature": 0.1}}, 8, 8)
    assert [n for n, _ in learn.named_parameters()] == ["temperature.log_scale"]


def test_alignment_config_defaults_and_checks():
    from espnet_lw.losses.config import AlignmentConfig, ClipConfig, MseConfig

    # one default for the MSE target: the encoder outputs (also in the EncRL model's default alignment)
    assert AlignmentConfig.from_dict({"mse": {}}).mse.target == "encoder"
    default = AlignmentConfig.default()
    assert default.clip == ClipConfig() and default.mse == MseConfig(target="encoder")
    assert AlignmentConfig.from_dict({"clip": {}, "mse": {}}) == default
    # a typed config and its mapping build the same loss
    typed = AlignmentLoss(AlignmentConfig(clip=ClipConfig(level="frame"), mse=MseConfig(target="both")), 8, 8)
    assert typed.config == AlignmentLoss({"clip": {"level": "frame"}, "mse": {"target": "both"}}, 8, 8).config
    assert typed.needs_logp and typed.needs_encoder
    # unknown keys name the allowed ones
    allowed = r"\(allowed: \['target', 'weight'\]\)"
    with pytest.raises(ValueError, match=r"alignment.mse: unknown keys \['targt'\] " + allowed):
        AlignmentConfig.from_dict({"mse": {"targt": "encoder"}})
    with pytest.raises(ValueError, match=r"unknown keys \[.kl.\] \(allowed: clip, mse, layers\)"):
        AlignmentConfig.from_dict({"kl": {}})
    for bad, msg in [({"clip": {"level": "batch"}}, "level must be utterance or frame"),
                     ({"clip": {"temperature": 0}}, "temperature must be > 0"),
                     ({"clip": {"proj_dim": 0}}, "proj_dim must be a positive integer"),
                     ({"clip": {"normalize": "yes"}}, "normalize must be true or false"),
                     ({"clip": {"exclude_neighbours": 2}}, "exclude_neighbours needs level: frame"),
                     ({"clip": {"level": "frame", "exclude_neighbours": -1}}, "integer >= 0"),
                     ({"mse": {"weight": -1}}, "weight must be >= 0"),
                     ({"mse": {"target": "logits"}}, "target must be one of"),
                     ({"clip": {"weight": 0}, "mse": {"weight": 0.0}}, "every term has weight 0"),
                     ({}, "at least one"),
                     ({"clip": [1]}, "alignment.clip must be a mapping"),
                     ({"layers": {"weight": -1}}, "weight must be >= 0"),
                     ({"layers": {"blocks": [1]}}, r"alignment.layers: unknown keys \['blocks'\]"),
                     ({"layers": {"weight": 0}}, "every term has weight 0")]:
        with pytest.raises(ValueError, match=msg):
            AlignmentConfig.from_dict(bad)
    # a term with weight 0 is kept in the config but not in the loss
    only_mse = AlignmentLoss({"clip": {"weight": 0.0}, "mse": {}}, 8, 8)
    assert only_mse.clip_conf is None and only_mse.mse_conf == MseConfig() and not only_mse.needs_logp
