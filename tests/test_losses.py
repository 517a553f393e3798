"""Focal loss: agrees with torchvision, masks missing labels, takes soft targets and per-code alpha."""
from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import sigmoid_focal_loss

from bcc.core.patterns import OUTPUTS
from bcc.models.losses import MultitaskFocalLoss, alpha_from_frequencies, resolve_alpha


def test_matches_torchvision_with_one_alpha():
    torch.manual_seed(0)
    logits, y = torch.randn(16, 8), (torch.rand(16, 8) > 0.5).float()
    loss, heads = MultitaskFocalLoss([0.25] * 8, gamma=2.0)(logits, y)
    ref = sigmoid_focal_loss(logits, y, alpha=0.25, gamma=2.0, reduction="none")
    assert torch.allclose(heads["diagnosis"], ref[:, 0].mean())
    assert torch.allclose(heads["negative"], ref[:, 1].mean())
    assert torch.allclose(heads["patterns"], ref[:, 2:].mean())
    assert torch.allclose(loss, ref[:, 0].mean() + ref[:, 1].mean() + ref[:, 2:].mean())


def test_missing_labels_are_masked():
    torch.manual_seed(0)
    logits, y = torch.randn(8, 8, requires_grad=True), (torch.rand(8, 8) > 0.5).float()
    y_nan = y.clone()
    y_nan[:4, 3] = float("nan")
    fn = MultitaskFocalLoss([0.5] * 8)
    loss, heads = fn(logits, y_nan)
    assert torch.isfinite(loss)
    loss.backward()
    assert (logits.grad[:4, 3] == 0).all() and (logits.grad[4:, 3] != 0).all()
    # equals the loss over the observed cells only
    ref = sigmoid_focal_loss(logits.detach(), y, alpha=0.5, reduction="none") * 1.0
    keep = torch.ones_like(y, dtype=torch.bool)
    keep[:4, 3] = False
    assert torch.allclose(heads["patterns"], ref[:, 2:][keep[:, 2:]].mean(), atol=1e-6)
    all_missing = torch.full((8, 8), float("nan"))
    loss, _ = fn(logits.detach(), all_missing)
    assert loss.item() == 0.0


def test_per_code_alpha_and_head_weights():
    logits = torch.zeros(1, 8)
    y = torch.ones(1, 8)
    alpha = [0.1 * (i + 1) for i in range(8)]
    _, heads = MultitaskFocalLoss(alpha, gamma=0.0)(logits, y)
    # gamma 0, p = 0.5: each cell is alpha * log 2
    assert heads["diagnosis"].item() == pytest.approx(alpha[0] * math.log(2), rel=1e-5)
    assert heads["patterns"].item() == pytest.approx(sum(alpha[2:]) / 6 * math.log(2), rel=1e-5)
    total, _ = MultitaskFocalLoss(alpha, weights={"diagnosis": 0.0, "negative": 1.0, "patterns": 2.0})(logits, y)
    assert total.item() == pytest.approx((alpha[1] + 2 * sum(alpha[2:]) / 6) * math.log(2) * 0.25, rel=1e-5)


def test_soft_targets_interpolate():
    logits = torch.tensor([[2.0] * 8])
    fn = MultitaskFocalLoss([0.5] * 8)
    lo, hi, mid = (fn(logits, torch.full((1, 8), v))[0].item() for v in (0.0, 1.0, 0.7))
    assert min(lo, hi) <= mid <= max(lo, hi)


def test_alpha_from_frequencies():
    assert alpha_from_frequencies([0.5, 0.11, 0.99, float("nan")]) == pytest.approx([0.5, 0.89, 0.1, 0.5])
    freq = [0.5] * 8
    assert resolve_alpha("auto", freq) == [0.5] * 8
    assert resolve_alpha(0.25, freq) == [0.25] * 8
    assert resolve_alpha({"SW": 0.9}, freq)[OUTPUTS.index("SW")] == 0.9
    with pytest.raises(ValueError, match="unknown outputs"):
        resolve_alpha({"XX": 0.9}, freq)
