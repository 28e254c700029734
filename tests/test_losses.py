"""Tests for emseg_tutorial.losses."""

import math

import pytest
import torch
import torch.nn.functional as F

from emseg_tutorial.losses import (IGNORE_INDEX, bce_fake, bce_real, dice_loss, entropy_map, focal_loss,
                                   weighted_cross_entropy)


def _batch(seed=0, n=2, c=4, h=9, w=11):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, h, w, generator=g)
    codes = torch.randint(0, c + 1, (n, h, w), generator=g)  # 0 = unlabelled
    weights = torch.rand(n, h, w, generator=g) * 5
    return logits, codes.long() - 1, weights  # class indices, as the samplers hand them out


def test_hand_computed_two_pixel_case():
    # pixel a: logits (2, 0), class 0 -> ce = log(1 + e^-2); pixel b: logits (0, 0), class 1 -> log 2
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]]).reshape(1, 2, 1, 2)
    target = torch.tensor([[[0, 1]]])
    ce_a, ce_b = math.log(1 + math.exp(-2)), math.log(2)
    weights = torch.tensor([[[1.0, 3.0]]])
    got = weighted_cross_entropy(logits, target, weights)
    assert got.item() == pytest.approx((1 * ce_a + 3 * ce_b) / 4, rel=1e-6)
    assert weighted_cross_entropy(logits, target).item() == pytest.approx((ce_a + ce_b) / 2, rel=1e-6)


def test_unweighted_and_uniform_weights_equal_plain_mean_ce():
    logits, target, _ = _batch()
    expected = F.cross_entropy(logits, target, ignore_index=-1)
    assert torch.allclose(weighted_cross_entropy(logits, target), expected, atol=1e-6)
    for value in (1.0, 0.3, 7.0):
        uniform = torch.full(target.shape, value)
        assert torch.allclose(weighted_cross_entropy(logits, target, uniform), expected, atol=1e-6)


def test_weights_shift_the_loss_towards_heavy_pixels():
    logits = torch.tensor([[0.0, 0.0], [5.0, -5.0]]).reshape(1, 2, 1, 2)  # pixel 1 is confident
    target = torch.tensor([[[0, 0]]])
    light = weighted_cross_entropy(logits, target, torch.tensor([[[1.0, 10.0]]]))
    heavy = weighted_cross_entropy(logits, target, torch.tensor([[[10.0, 1.0]]]))
    assert heavy > light
    # only relative weights matter
    scaled = weighted_cross_entropy(logits, target, torch.tensor([[[100.0, 10.0]]]))
    assert torch.allclose(heavy, scaled)


def test_ignored_pixels_change_neither_loss_nor_their_grads():
    logits, target, weights = _batch(seed=1)
    assert (target == -1).any() and (target != -1).any()
    other = logits.clone()
    ignored = (target == -1).unsqueeze(1).expand_as(logits)
    other[ignored] = torch.randn(int(ignored.sum())) * 100
    for w in (None, weights):
        a = logits.clone().requires_grad_()
        b = other.clone().requires_grad_()
        la, lb = weighted_cross_entropy(a, target, w), weighted_cross_entropy(b, target, w)
        la.backward(), lb.backward()
        assert torch.allclose(la, lb)
        assert torch.all(a.grad[ignored] == 0) and torch.all(b.grad[ignored] == 0)
        assert torch.allclose(a.grad, b.grad)


def test_no_labelled_pixel_gives_zero_with_grad():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    target = torch.full((1, 4, 4), -1)
    loss = weighted_cross_entropy(logits, target, torch.rand(1, 4, 4))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.all(logits.grad == 0)
    # all labelled weights zero behaves the same
    zero = weighted_cross_entropy(logits, torch.zeros((1, 4, 4), dtype=torch.long), torch.zeros(1, 4, 4))
    assert zero.item() == 0.0


def test_loss_checks_shapes_and_dtype():
    logits, target, weights = _batch()
    with pytest.raises(ValueError, match="target"):
        weighted_cross_entropy(logits, target[:, :-1])
    with pytest.raises(ValueError, match="int64"):
        weighted_cross_entropy(logits, target.float())
    with pytest.raises(ValueError, match="weights"):
        weighted_cross_entropy(logits, target, weights[0])
    with pytest.raises(ValueError):
        dice_loss(logits, target[0])


def _perfect_logits(target, c, scale=30.0):
    return scale * F.one_hot(target.clamp(min=0), c).movedim(-1, 1).float()


def test_dice_of_perfect_logits_is_about_zero_and_wrong_is_high():
    _, target, _ = _batch(seed=2)
    perfect = _perfect_logits(target, 4)
    assert dice_loss(perfect, target).item() < 1e-6
    wrong = _perfect_logits((target.clamp(min=0) + 1) % 4, 4)
    assert dice_loss(wrong, target).item() > 0.9


def test_dice_ignores_unlabelled_pixels_and_is_bounded():
    logits, target, _ = _batch(seed=3)
    other = logits.clone()
    ignored = (target == -1).unsqueeze(1).expand_as(logits)
    other[ignored] = torch.randn(int(ignored.sum())) * 100
    a, b = dice_loss(logits, target), dice_loss(other, target)
    assert torch.allclose(a, b)
    assert 0 < a.item() < 1
    # a custom ignore value works like -1
    target255 = torch.where(target == -1, 255, target)
    assert torch.allclose(dice_loss(logits, target255, ignore_index=255), a)


def test_dice_has_gradients():
    logits, target, _ = _batch(seed=4)
    logits.requires_grad_()
    dice_loss(logits, target).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_entropy_map_uniform_is_one_and_one_hot_is_zero():
    for c in (2, 4):
        uniform = torch.full((2, c, 5, 6), 1.0 / c)
        ent = entropy_map(uniform)
        assert ent.shape == (2, 5, 6)
        assert torch.allclose(ent, torch.ones(2, 5, 6), atol=1e-6)
        one_hot = F.one_hot(torch.randint(0, c, (2, 5, 6)), c).movedim(-1, 1).float()
        assert torch.equal(entropy_map(one_hot), torch.zeros(2, 5, 6))


def test_entropy_map_matches_formula_and_has_finite_grads():
    logits = torch.randn(1, 3, 4, 4)
    logits[0, 0, 0, 0] = 200.0  # softmax underflows to exact zeros at this pixel
    logits.requires_grad_()
    probs = logits.softmax(1)
    ent = entropy_map(probs)
    p = probs.detach()[:, :, 1:, 1:]
    expected = -(p * p.log()).sum(1) / math.log(3)
    assert torch.allclose(ent.detach()[:, 1:, 1:], expected, atol=1e-6)
    assert ((ent >= 0) & (ent <= 1 + 1e-6)).all()
    ent.sum().backward()
    assert torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError):
        entropy_map(torch.ones(1, 1, 2, 2))


def test_bce_helpers_match_torch():
    logits = torch.randn(3, 1, 8, 8)
    assert torch.allclose(bce_real(logits), F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits)))
    assert torch.allclose(bce_fake(logits), F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits)))
    # a discriminator that says "real" everywhere: small real loss, large fake loss
    sure = torch.full((4,), 10.0)
    assert bce_real(sure) < 1e-3 < bce_fake(sure)


# ---------------------------------------------------------------------------------- focal loss
def test_focal_at_gamma_zero_is_weighted_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, 6)
    target = torch.randint(-1, 3, (2, 5, 6))
    weights = torch.rand(2, 5, 6) * 4
    for w in (None, weights):
        assert torch.allclose(focal_loss(logits, target, w, gamma=0.0),
                              weighted_cross_entropy(logits, target, w), atol=1e-6)


def test_focal_down_weights_easy_pixels():
    # pixel 0 is easy (p = 0.95), pixel 1 hard (p = 0.5): focal keeps most of the hard term only
    logits = torch.tensor([[[[3.0, 0.0]], [[0.0, 0.0]]]])
    target = torch.tensor([[[0, 1]]])
    p = torch.tensor([torch.sigmoid(torch.tensor(3.0)).item(), 0.5])
    ce = -p.log()
    expected = ((1 - p) ** 2 * ce).sum() / 2
    assert torch.isclose(focal_loss(logits, target), expected, atol=1e-6)
    easy_share_ce = ce[0] / ce.sum()
    easy_share_focal = ((1 - p[0]) ** 2 * ce[0]) / ((1 - p) ** 2 * ce).sum()
    assert easy_share_focal < 0.01 * easy_share_ce
    assert focal_loss(logits, target) < weighted_cross_entropy(logits, target)


def test_focal_ignores_unlabelled_pixels_and_has_grads():
    torch.manual_seed(1)
    logits = torch.randn(1, 2, 4, 4, requires_grad=True)
    target = torch.randint(0, 2, (1, 4, 4))
    target[0, 0] = IGNORE_INDEX
    other = logits.detach().clone()
    other[0, :, 0] = 50.0  # unlabelled row changed: loss unchanged
    assert torch.isclose(focal_loss(logits, target), focal_loss(other, target))
    focal_loss(logits, target).backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad[0, :, 0] == 0).all()
    none = torch.full((1, 4, 4), IGNORE_INDEX)
    assert focal_loss(logits, none).item() == 0.0


def test_focal_checks_gamma_and_shapes():
    logits, target = torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="gamma"):
        focal_loss(logits, target, gamma=-1)
    with pytest.raises(ValueError, match="weights"):
        focal_loss(logits, target, torch.ones(1, 2, 3))
