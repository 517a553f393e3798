"""The multitask network (paper §2.3): shared backbone → dropout → three heads, logits in OUTPUTS order.

Input: float images in [0, 1], shape (N, 3, H, W); the network normalises them with its backbone's mean
and std itself, so every consumer (training, Grad-CAM, predict, ONNX export) feeds the same thing.
Output: (N, 8) logits in ``bcc.core.patterns.OUTPUTS`` order ``bcc, PN, U, ON, MG, ML, SW, AT``: the
heads of ``HEADS`` — diagnosis (bcc), negative criterion (PN), BCC patterns (U..AT) — side by side.
``head_weights()`` / ``head_bias()`` are the one accessor of the stacked head parameters (Grad-CAM's
closed form and the ONNX export read them).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from bcc.core.patterns import HEADS
from bcc.models.backbones import create_backbone, last_blocks, spec

#: Parts of the network a stage can train (conf/stage/*.yaml `trainable`).
PARTS = ("backbone", "last_blocks", *(f"{h}_head" for h in HEADS))


class MultitaskNet(nn.Module):
    def __init__(self, backbone: nn.Module, backbone_name: str, dropout: float = 0.3):
        super().__init__()
        self.backbone_name = backbone_name
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        width = backbone.num_features
        self.heads = nn.ModuleDict({h: nn.Linear(width, len(outputs)) for h, outputs in HEADS.items()})
        cfg = getattr(backbone, "pretrained_cfg", {}) or {}
        mean, std = cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225))
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self._held_in_eval: list[nn.Module] = []
        self.spec: dict[str, Any] = {"backbone": backbone_name, "dropout": float(dropout)}

    @classmethod
    def build(cls, backbone: str, timm_name: str | None = None, pretrained: bool = False, weights=None,
              dropout: float = 0.3, image_size: int | None = None) -> MultitaskNet:
        """The network for backbone name `backbone` (``conf/model/multitask.yaml`` instantiates this)."""
        net = cls(create_backbone(backbone, timm_name, pretrained=pretrained, weights=weights,
                                  image_size=image_size), backbone, dropout)
        net.spec.update(timm_name=timm_name or spec(backbone).timm_name, image_size=image_size)  # what a checkpoint needs to rebuild it
        return net

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone((x - self.mean) / self.std)

    def head_logits(self, f: torch.Tensor) -> torch.Tensor:
        """(N, 8) logits from pooled (and dropped-out) features (N, C)."""
        return torch.cat([self.heads[h](f) for h in HEADS], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_logits(self.dropout(self.features(x)))

    def redraw_heads(self, seed: int) -> None:
        """Initialise the heads afresh from their own random stream.

        Why: the stage 0 -> 1 handover keeps only the backbone, as ImageNet weights would arrive. A stage
        seeded like stage 0 would otherwise draw stage 0's *initial* heads again, the very ones its
        backbone was trained through: heads that already "know" the patterns without training (measured
        at 192 px: pattern AUROC 0.85 before stage 3 ran)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for head in self.heads.values():
                head.reset_parameters()

    def head_weights(self) -> torch.Tensor:
        """(8, C): the heads' weight rows stacked in OUTPUTS order."""
        return torch.cat([self.heads[h].weight for h in HEADS], dim=0)

    def head_bias(self) -> torch.Tensor:
        """(8,): the heads' biases in OUTPUTS order."""
        return torch.cat([self.heads[h].bias for h in HEADS], dim=0)

    def part(self, name: str) -> list[nn.Module]:
        if name == "last_blocks":
            return last_blocks(self.backbone_name, self.backbone)
        if name == "backbone":
            return [self.backbone]
        if name in PARTS:
            return [self.heads[name.removesuffix("_head")]]
        raise ValueError(f"unknown part {name!r}; parts are {PARTS}")

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
                              and m is not self.dropout and m is not self.heads]
        self.train(self.training)
        return trainable

    def train(self, mode: bool = True) -> MultitaskNet:
        super().train(mode)
        for m in self._held_in_eval:
            m.training = False
        return self
