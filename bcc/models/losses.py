"""Sigmoid focal loss per head (paper §2.4, Lin et al.), weighted sum over the three heads.

Columns follow ``bcc.core.patterns.OUTPUTS`` (bcc, PN, U..AT), heads ``HEADS``. ``alpha`` is per output: the weight of a
positive, ``1 - alpha`` that of a negative; by default ``1 - positive frequency`` on the training
folds (``alpha_from_frequencies``), so a rare code's positives count as much as its negatives.
Missing labels (NaN) are masked out; each head's loss is the mean over its observed cells. Targets may
be soft (EM posteriors in [0, 1]); the focal term is well defined for them.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torchvision.ops import sigmoid_focal_loss

from bcc.core.errors import UsageError
from bcc.core.patterns import HEAD_COLUMNS, OUTPUTS


def alpha_from_frequencies(freq: Sequence[float], low: float = 0.1, high: float = 0.9) -> list[float]:
    """alpha = 1 - positive frequency, clipped to [low, high] (a degenerate split keeps both classes)."""
    return [float(np.clip(1.0 - f, low, high)) if np.isfinite(f) else 0.5 for f in freq]


def resolve_alpha(alpha, freq: Sequence[float]) -> list[float]:
    """`alpha` from the config: "auto" (from frequencies), one number for all, or a mapping per output."""
    if alpha is None or alpha == "auto":
        return alpha_from_frequencies(freq)
    if isinstance(alpha, (int, float)):
        return [float(alpha)] * len(OUTPUTS)
    if isinstance(alpha, Mapping):
        auto = alpha_from_frequencies(freq)
        unknown = set(alpha) - set(OUTPUTS)
        if unknown:
            raise UsageError(f"loss.alpha: unknown outputs {sorted(unknown)}; use keys from {OUTPUTS}")
        return [float(alpha.get(o, a)) for o, a in zip(OUTPUTS, auto, strict=True)]
    values = [float(a) for a in alpha]
    if len(values) != len(OUTPUTS):
        raise UsageError(f"loss.alpha: need {len(OUTPUTS)} values in order {OUTPUTS}, got {len(values)}")
    return values


def masked_focal_terms(logits: torch.Tensor, targets: torch.Tensor, alpha: torch.Tensor,
                       gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Element-wise focal loss (N, C) with NaN targets zeroed, and the 0/1 mask of observed cells."""
    mask = torch.isfinite(targets)
    t = torch.where(mask, targets, torch.zeros_like(targets))
    terms = sigmoid_focal_loss(logits, t, alpha=-1, gamma=gamma, reduction="none")  # alpha applied below
    alpha_t = alpha * t + (1 - alpha) * (1 - t)
    return terms * alpha_t * mask, mask.to(terms.dtype)


class MultitaskFocalLoss(nn.Module):
    """Focal loss per head (``HEADS``), summed with the stage's head weights; a head of weight 0 is not trained."""

    alpha: torch.Tensor  # a buffer, declared for the type checker

    def __init__(self, alpha: Sequence[float], gamma: float = 2.0, weights: Mapping[str, float] | None = None):
        super().__init__()
        if len(alpha) != len(OUTPUTS):
            raise ValueError(f"alpha needs {len(OUTPUTS)} values (order {OUTPUTS})")
        self.register_buffer("alpha", torch.tensor([float(a) for a in alpha]))
        self.gamma = float(gamma)
        weights = dict(weights or {})
        unknown = set(weights) - set(HEAD_COLUMNS)
        if unknown:
            raise UsageError(f"stage.loss_weights: unknown heads {sorted(unknown)}; heads are {list(HEAD_COLUMNS)}")
        self.weights = {h: float(weights.get(h, 1.0)) for h in HEAD_COLUMNS}

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and the per-head losses (for logging)."""
        terms, mask = masked_focal_terms(logits, targets.to(logits.dtype), self.alpha, self.gamma)
        heads = {h: terms[:, cols].sum() / mask[:, cols].sum().clamp_min(1.0) for h, cols in HEAD_COLUMNS.items()}
        total = sum(self.weights[h] * v for h, v in heads.items() if self.weights[h] != 0.0)
        if not torch.is_tensor(total):  # every weight zero
            total = logits.sum() * 0.0
        return total, heads
