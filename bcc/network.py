"""The multitask network (paper §2.3): shared backbone → dropout → three heads, logits in OUTPUTS order.

Input: float images in [0, 1], shape (N, 3, H, W); the network normalises them with its backbone's mean
and std itself, so every consumer (training, Grad-CAM, predict, ONNX export) feeds the same thing.
Output: (N, 8) logits in ``bcc.patterns.OUTPUTS`` order ``bcc, PN, U, ON, MG, ML, SW, AT``:
the diagnosis head (bcc), the negative-criterion head (PN) and the BCC-pattern head (U..AT).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from bcc.backbones import create_backbone, last_blocks
from bcc.patterns import BCC_CODES, OUTPUTS, clinical_rule

#: Parts of the network a stage can train (conf/stage/*.yaml `trainable`).
PARTS = ("backbone", "last_blocks", "diagnosis_head", "negative_head", "pattern_head")


class MultitaskNet(nn.Module):
    def __init__(self, backbone: nn.Module, backbone_name: str, dropout: float = 0.3):
        super().__init__()
        self.backbone_name = backbone_name
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        width = backbone.num_features
        self.diagnosis_head = nn.Linear(width, 1)
        self.negative_head = nn.Linear(width, 1)
        self.pattern_head = nn.Linear(width, len(BCC_CODES))
        cfg = getattr(backbone, "pretrained_cfg", {}) or {}
        mean, std = cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225))
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self._held_in_eval: list[nn.Module] = []

    @classmethod
    def build(cls, name: str, timm_name: str | None = None, pretrained: bool = False, weights=None,
              dropout: float = 0.3, image_size: int | None = None) -> MultitaskNet:
        backbone = create_backbone(name, timm_name, pretrained=pretrained, weights=weights, image_size=image_size)
        return cls(backbone, name, dropout)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone((x - self.mean) / self.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.dropout(self.features(x))
        return torch.cat([self.diagnosis_head(f), self.negative_head(f), self.pattern_head(f)], dim=1)

    def part(self, name: str) -> list[nn.Module]:
        if name == "last_blocks":
            return last_blocks(self.backbone_name, self.backbone)
        if name not in PARTS:
            raise ValueError(f"unknown part {name!r}; parts are {PARTS}")
        return [getattr(self, name)]

    def set_trainable(self, parts: Iterable[str]) -> list[nn.Module]:
        """Train only `parts`; everything else gets requires_grad=False and is held in eval mode.

        Held modules stay in eval mode through any later ``.train()`` (frozen BatchNorm keeps its running
        statistics and dropout inside a frozen backbone is off). Returns the trainable modules.
        """
        trainable = [m for p in parts for m in self.part(p)]
        self.requires_grad_(False)
        inside: set[int] = set()
        for m in trainable:
            m.requires_grad_(True)
            inside.update(id(sub) for sub in m.modules())
        # the flag is set per module (not .eval(), which recurses into trainable children)
        self._held_in_eval = [m for m in self.modules() if id(m) not in inside and m is not self
                              and m is not self.dropout]
        self.train(self.training)
        return trainable

    def train(self, mode: bool = True) -> MultitaskNet:
        super().train(mode)
        for m in self._held_in_eval:
            m.training = False
        return self

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (N, 8) in OUTPUTS order and the rule-based verdict (N,) from the patterns."""
        probs = torch.sigmoid(self(x)).cpu().numpy()
        return probs, rule_verdict(probs)


def rule_verdict(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Clinical rule applied to the pattern outputs (columns 1..7 of OUTPUTS order)."""
    return clinical_rule((np.asarray(probs)[:, 1:] >= threshold).astype(np.int64))


assert OUTPUTS == ("bcc", "PN", *BCC_CODES), "network output order must match bcc.patterns.OUTPUTS"
