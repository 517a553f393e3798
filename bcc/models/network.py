"""The multitask network (paper §2.3): shared backbone → dropout → three heads, logits in OUTPUTS order.

Input: float images in [0, 1], shape (N, 3, H, W); the network normalises them with its backbone's mean
and std itself (timm's pretrained config of the architecture, recorded in ``spec["mean"]``/``spec["std"]`` so a
checkpoint carries them), so every consumer (training, Grad-CAM, predict, ONNX export) feeds the same thing.

The network can also be entered and left at two inner *levels* (``LEVELS``): ``trunk`` (the input of the
last three blocks) and ``pooled`` (the pooled features the heads read). ``encode(x, level)`` runs the part
before a level and ``logits_from(level, t)`` the part after it; ``logits_from(level, encode(x, level))`` is
``forward(x)``. ``input_level(parts)`` is the deepest level below which a stage training `parts` changes
nothing: its frozen part's output can be computed once and reused (``bcc.models.activations``).
Output: (N, 8) logits in ``bcc.core.patterns.OUTPUTS`` order ``bcc, PN, U, ON, MG, ML, SW, AT``: the
heads of ``HEADS`` — diagnosis (bcc), negative criterion (PN), BCC patterns (U..AT) — side by side.
``head_weights()`` / ``head_bias()`` are the one accessor of the stacked head parameters (Grad-CAM's
closed form and the ONNX export read them).

``spec["trained"]`` records, per output, the labels its head was last trained on (stage, labelled images,
positives): a head that never saw both classes — U, ON, MG, ML and SW on every public dataset — outputs
its initialisation's noise, and every consumer (metrics, the clinical rule, Table 3, triage, the export)
asks :meth:`MultitaskNet.trained` before it shows or uses an output.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from bcc.core.errors import BadInput
from bcc.core.patterns import HEADS, OUTPUTS
from bcc.data.images import Preprocess
from bcc.models.backbones import cam_target, create_backbone, last_blocks, spec

#: Parts of the network a stage can train (conf/stage/*.yaml `trainable`).
PARTS = ("backbone", "last_blocks", *(f"{h}_head" for h in HEADS))
#: Where the network can be entered: the image, the input of the last three blocks, the pooled features.
LEVELS = ("image", "trunk", "pooled")


def input_level(parts: Iterable[str]) -> str:
    """The deepest level whose input a stage training `parts` leaves unchanged (everything before it frozen)."""
    parts = set(parts)
    if "backbone" in parts:
        return "image"
    return "trunk" if "last_blocks" in parts else "pooled"


class MultitaskNet(nn.Module):
    # declared for the type checker (nn.Module's attribute lookup answers Tensor | Module for everything)
    backbone: Any  # a timm model: forward_features, forward_head and each architecture's own parts
    mean: torch.Tensor
    std: torch.Tensor
    image_size: int  # set by models.checkpoint.load_network, with checkpoint_path
    checkpoint_path: str

    def __init__(self, backbone: nn.Module, backbone_name: str, dropout: float = 0.3,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        super().__init__()
        self.backbone_name = backbone_name
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        width = cast(int, backbone.num_features)
        self.heads = nn.ModuleDict({h: nn.Linear(width, len(outputs)) for h, outputs in HEADS.items()})
        mean, std = normalisation(backbone, mean, std)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self._held_in_eval: list[nn.Module] = []
        self.spec: dict[str, Any] = {"backbone": backbone_name, "dropout": float(dropout), "mean": mean, "std": std}

    @classmethod
    def build(cls, backbone: str, timm_name: str | None = None, pretrained: bool = False, weights=None,
              dropout: float = 0.3, image_size: int | None = None, resize: str = "square",
              colour: str = "none", gradcam_layer: str | None = None, mean: Sequence[float] | None = None,
              std: Sequence[float] | None = None) -> MultitaskNet:
        """The network for backbone name `backbone` (``conf/model/multitask.yaml`` instantiates this).

        `resize` and `colour` are how its input is made (``bcc.data.images.Preprocess``), `mean`/`std` its
        normalisation (None: the architecture's, from timm's pretrained config) and `gradcam_layer` where
        Grad-CAM reads it (``backbone.gradcam_layer``): kept in the spec, so a checkpoint carries them to
        every consumer."""
        net = cls(create_backbone(backbone, timm_name, pretrained=pretrained, weights=weights,
                                  image_size=image_size), backbone, dropout, mean, std)
        # what a checkpoint needs to rebuild it and to make its input
        net.spec.update(timm_name=timm_name or spec(backbone).timm_name, image_size=image_size, resize=resize,
                        colour=colour)
        net.explain_at(gradcam_layer)
        return net

    def explain_at(self, layer: str | None) -> None:
        """Take Grad-CAM's maps at backbone module `layer` (a path such as ``blocks.4``; None: the backbone's
        default, ``bcc.models.backbones.BACKBONES``)."""
        path, _ = cam_target(self.backbone_name, layer)
        try:
            self.backbone.get_submodule(path)
        except AttributeError:
            raise BadInput(f"backbone.gradcam_layer={layer}: {self.spec.get('timm_name', self.backbone_name)} has "
                           f"no module {path!r} (print(net.backbone) lists them; e.g. "
                           f"{spec(self.backbone_name).cam_layer})") from None
        self.spec["gradcam_layer"] = None if layer in (None, "") else str(layer)

    def record_training(self, heads: Iterable[str], counts: Mapping[str, Mapping[str, int]], stage: int) -> None:
        """Note that `heads` were trained at `stage` on the labels `counts` (per output: labelled, positive)."""
        record = dict(self.spec.get("trained") or {})
        for h in heads:
            for o in HEADS[h]:
                record[o] = {"stage": int(stage), "labelled": int(counts[o]["labelled"]),
                             "positive": int(counts[o]["positive"])}
        self.spec["trained"] = record

    def forget_heads(self) -> None:
        """The heads were drawn afresh: nothing they output has been trained yet."""
        self.spec["trained"] = {}

    @property
    def trained(self) -> np.ndarray:
        """(8,) bool in OUTPUTS order (:func:`trained_outputs` of the spec)."""
        return trained_outputs(self.spec)

    @property
    def preprocess(self) -> Preprocess:
        """How a picture becomes this network's input (size, resize, colour constancy)."""
        return Preprocess.of(self.spec)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalise(x))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def encode(self, x: torch.Tensor, level: str) -> torch.Tensor:
        """Images in [0, 1] → the network's activation at `level` (``LEVELS``; ``image``: `x` itself)."""
        if level == "image":
            return x
        t = spec(self.backbone_name).trunk(self.backbone, self.normalise(x))
        return t if level == "trunk" else self.trunk_to_pooled(t)

    def trunk_to_pooled(self, t: torch.Tensor) -> torch.Tensor:
        """Pooled features from the trunk's output: the last three blocks, the final norm and the pooling."""
        return spec(self.backbone_name).tail(self.backbone, t)

    def logits_from(self, level: str, t: torch.Tensor) -> torch.Tensor:
        """(N, 8) logits from the activation `t` at `level` — the rest of ``forward``."""
        if level == "image":
            return self(t)
        pooled = t if level == "pooled" else self.trunk_to_pooled(t)
        return self.head_logits(self.dropout(pooled))

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
            for head in self._linear_heads():
                head.reset_parameters()

    def head_weights(self) -> torch.Tensor:
        """(8, C): the heads' weight rows stacked in OUTPUTS order."""
        return torch.cat([head.weight for head in self._linear_heads()], dim=0)

    def head_bias(self) -> torch.Tensor:
        """(8,): the heads' biases in OUTPUTS order."""
        return torch.cat([head.bias for head in self._linear_heads()], dim=0)

    def _linear_heads(self) -> list[nn.Linear]:
        return [cast(nn.Linear, self.heads[h]) for h in HEADS]

    def part(self, name: str) -> list[nn.Module]:
        if name == "last_blocks":
            return last_blocks(self.backbone_name, self.backbone)
        if name == "backbone":
            return [self.backbone]
        if name in PARTS:
            return [self.heads[name.removesuffix("_head")]]
        raise ValueError(f"unknown part {name!r}; parts are {PARTS}")

    def set_trainable(self, parts: Iterable[str], bn_statistics: str = "train") -> list[nn.Module]:
        """Train only `parts`; everything else gets requires_grad=False and is held in eval mode.

        Held modules stay in eval mode through any later ``.train()`` (frozen BatchNorm keeps its running
        statistics and dropout inside a frozen backbone is off). `bn_statistics`: ``train`` — BatchNorm layers
        inside the trained parts normalise with batch statistics and update their running ones; ``frozen`` —
        they keep ImageNet's (or the previous stage's) running statistics and train their scale and shift
        only, the usual choice when fine-tuning a pretrained network on a small or resampled dataset.
        Returns the trainable modules.
        """
        if bn_statistics not in ("train", "frozen"):
            raise BadInput(f"bn_statistics={bn_statistics!r}: choose 'train' or 'frozen'")
        trainable = [m for p in parts for m in self.part(p)]
        self.requires_grad_(False)
        inside: set[int] = set()
        for m in trainable:
            m.requires_grad_(True)
            inside.update(id(sub) for sub in m.modules())
        if bn_statistics == "frozen":
            inside -= {id(m) for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
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


def normalisation(backbone: nn.Module, mean: Sequence[float] | None = None,
                  std: Sequence[float] | None = None) -> tuple[list[float], list[float]]:
    """The input normalisation: `mean`/`std` as given (a checkpoint's), else the architecture's own from timm's
    pretrained config (ImageNet's for most, 0.5 for the EfficientNet-Lite family)."""
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    mean = mean if mean is not None else cfg.get("mean")
    std = std if std is not None else cfg.get("std")
    if mean is None or std is None:
        raise BadInput(f"{type(backbone).__name__}: timm gives no input mean/std for it; pass model.net.mean and "
                       f"model.net.std")
    mean, std = [float(v) for v in mean], [float(v) for v in std]
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise BadInput(f"normalisation mean={mean} std={std}: give three values each, std > 0")
    return mean, std


def trained_outputs(spec: Mapping[str, Any]) -> np.ndarray:
    """(8,) bool in OUTPUTS order: the outputs whose head was trained on both classes of their label.

    A spec without the record (checkpoints before it) counts every output as trained, as it was used."""
    record = spec.get("trained")
    if record is None:
        return np.ones(len(OUTPUTS), bool)
    return np.array([bool(r) and r.get("positive", 0) > 0 and r.get("labelled", 0) > r.get("positive", 0)
                     for r in (record.get(o) for o in OUTPUTS)])


def untrained_note(spec: Mapping[str, Any]) -> str:
    """'U, ON: not trained (no labels)' — which outputs a report must not show as findings, and why."""
    record, mask = spec.get("trained") or {}, trained_outputs(spec)
    parts = []
    for o, ok in zip(OUTPUTS, mask, strict=True):
        if not ok:
            r = record.get(o) or {}
            why = ("no labels" if not r or not r.get("labelled") else
                   f"{r['labelled']} labels, {r.get('positive', 0)} positive")
            parts.append(f"{o} ({why})")
    return "not trained: " + ", ".join(parts) if parts else ""
