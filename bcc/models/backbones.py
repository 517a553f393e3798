"""timm backbones: everything that differs per `backbone=` name lives in the registry ``BACKBONES``.

Per backbone: the timm architecture, its "last three blocks", whether it must be told the input size,
and how Grad-CAM reads it (target layer and mode, see ``bcc.explanation.gradcam``). The target layer is
a choice: ``backbone.gradcam_layer`` (``conf/backbone/<name>.yaml``, a module path of the timm model such
as ``blocks.4``) replaces the default below, and ``cam_target`` says how the maps are then computed.

Every backbone is created with ``num_classes=0``: it returns pooled features (``num_features`` wide) and
our own heads sit on top (``bcc.models.network``). The one place per backbone that says what "the last three
blocks of the feature extractor" (paper §2.3, unfrozen in stage 2) are is ``BACKBONES`` below:

- ``mobilenet`` (mobilenetv2_100): the last three inverted-residual blocks (``blocks[5][1]``,
  ``blocks[5][2]``, ``blocks[6][0]``) and the final 1x1 convolution that follows them (``conv_head``,
  ``bn2``) — Keras' ``block_15``, ``block_16`` and ``Conv_1``/``out_relu`` in the paper's framework.
- ``efficientnet_lite0`` / ``_lite1`` / ``_lite2`` (tf_efficientnet_lite*): the same family as MobileNetV2 in
  timm; the last three inverted-residual blocks (``blocks[5][-2:]``, ``blocks[6][0]``), ``conv_head`` and ``bn2``.
- ``convnext`` (convnext_tiny): the three ConvNeXt blocks of the last stage (``stages[3].blocks``) and
  the final ``head.norm``.
- ``vit`` (vit_base_patch16_224): the last three transformer blocks (``blocks[9:12]``) and the final
  ``norm``.

Each backbone also splits at the same place into a *trunk* (everything before the last three blocks) and a
*tail* (the last three blocks, the final norm and the pooling): ``tail(trunk(x)) == backbone(x)``. A stage
that trains only the last blocks and the heads can therefore train on the trunk's output computed once
(``bcc.models.activations``), and one that trains only the heads on the pooled features.

Weights (``backbone.pretrained=true``) come from ``backbone.weights=<file>`` (a timm/ImageNet
``.safetensors``/``.pth`` state dict, opened by ``bcc.models.serialization.safe_load`` first, so a file
carrying pickled code is refused), from an installed package that ships them (``bcc.models.imagenet_weights``:
EfficientNet-Lite0/1/2, no network needed) or from the Hugging Face cache; the hub is only contacted when it
is reachable, so a machine without network fails in well under a second with instructions.
"""
from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import torch
from torch import nn

from bcc.core.errors import BadInput
from bcc.models.imagenet_weights import load_packaged, packaged
from bcc.models.serialization import safe_load


class BackboneWeightsError(BadInput):
    """Pretrained weights were asked for but cannot be had; the message says how to supply them."""


# ---- per family: the last three blocks (stage 2), and the trunk / tail split in front of them -----------
# EfficientNet family (timm's EfficientNet class: MobileNetV2, EfficientNet-Lite): blocks are stages of blocks.
def _inverted_residuals(m: Any) -> list[nn.Module]:
    return [block for stage in m.blocks for block in stage]


def _efficientnet_last_blocks(m: Any) -> list[nn.Module]:  # a timm model
    return [*_inverted_residuals(m)[-3:], m.conv_head, m.bn2]


def _efficientnet_trunk(m: Any, x: torch.Tensor) -> torch.Tensor:
    x = m.bn1(m.conv_stem(x))
    for block in _inverted_residuals(m)[:-3]:
        x = block(x)
    return x


def _efficientnet_tail(m: Any, x: torch.Tensor) -> torch.Tensor:
    for block in _inverted_residuals(m)[-3:]:
        x = block(x)
    return m.forward_head(m.bn2(m.conv_head(x)))


def _convnext_last_blocks(m: Any) -> list[nn.Module]:  # a timm model
    return [*list(m.stages[-1].blocks)[-3:], m.head.norm]


def _convnext_trunk(m: Any, x: torch.Tensor) -> torch.Tensor:
    x = m.stem(x)
    for stage in list(m.stages)[:-1]:
        x = stage(x)
    x = m.stages[-1].downsample(x)
    for block in list(m.stages[-1].blocks)[:-3]:
        x = block(x)
    return x


def _convnext_tail(m: Any, x: torch.Tensor) -> torch.Tensor:
    for block in list(m.stages[-1].blocks)[-3:]:
        x = block(x)
    return m.forward_head(m.norm_pre(x))


def _vit_last_blocks(m: Any) -> list[nn.Module]:  # a timm model
    return [*list(m.blocks)[-3:], m.norm]


def _vit_trunk(m: Any, x: torch.Tensor) -> torch.Tensor:
    x = m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(x))))
    for block in list(m.blocks)[:-3]:
        x = block(x)
    return x


def _vit_tail(m: Any, x: torch.Tensor) -> torch.Tensor:
    for block in list(m.blocks)[-3:]:
        x = block(x)
    return m.forward_head(m.norm(x))


Split = Callable[[Any, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class BackboneSpec:
    timm_name: str
    last_blocks: Callable[[nn.Module], list[nn.Module]]
    trunk: Split  # input → the input of the last three blocks
    tail: Split  # the trunk's output → pooled features: the last three blocks, final norm, pooling
    cam_layer: str  # Grad-CAM's default target layer: its module path in the timm model (``get_submodule``)
    cam_mode: str  # how the 8 maps are computed there: "linear" | "pooled" | "tokens" (bcc.explanation.gradcam)
    sized: bool = False  # the architecture must be told the input size (ViT position embeddings)


#: backbone name (conf/backbone/<name>.yaml) → its architecture, last three blocks, trunk/tail and Grad-CAM reading.
_EFFICIENTNET = (_efficientnet_last_blocks, _efficientnet_trunk, _efficientnet_tail)
BACKBONES: dict[str, BackboneSpec] = {
    # bn2 = BatchNormAct2d after conv_head: the last feature map (activation included)
    "mobilenet": BackboneSpec("mobilenetv2_100", *_EFFICIENTNET, "bn2", "linear"),
    # ImageNet weights from an installed package (bcc.models.imagenet_weights); bn2 as for MobileNetV2
    "efficientnet_lite0": BackboneSpec("tf_efficientnet_lite0", *_EFFICIENTNET, "bn2", "linear"),
    "efficientnet_lite1": BackboneSpec("tf_efficientnet_lite1", *_EFFICIENTNET, "bn2", "linear"),
    "efficientnet_lite2": BackboneSpec("tf_efficientnet_lite2", *_EFFICIENTNET, "bn2", "linear"),
    # the last stage's output (timm's norm_pre after it is the identity for ConvNeXt-T)
    "convnext": BackboneSpec("convnext_tiny", _convnext_last_blocks, _convnext_trunk, _convnext_tail, "stages.3",
                             "pooled"),
    # the input of the last attention: ViT pools the class token, so the last block's patch tokens get
    # no gradient
    "vit": BackboneSpec("vit_base_patch16_224", _vit_last_blocks, _vit_trunk, _vit_tail, "blocks.11.norm1",
                        "tokens", sized=True),
}


def cam_target(name: str, layer: str | None = None) -> tuple[str, str]:
    """``(module path, mode)`` of Grad-CAM for backbone `name` at `layer` (None: the default). Away from
    the default layer the fast closed forms do not hold: ``autograd`` (one batched backward to the layer),
    or ``tokens`` (the same, reshaping ViT's tokens to a grid)."""
    s = spec(name)
    if layer in (None, "", s.cam_layer):
        return s.cam_layer, s.cam_mode
    return str(layer), "tokens" if s.cam_mode == "tokens" else "autograd"


def spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise BadInput(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)} (backbone=<name>)")
    return BACKBONES[name]


def check_timm_name(name: str, timm_name: str | None, where: str = "backbone.timm_name") -> str:
    """`timm_name` (default: the registry's for backbone `name`) when it is an architecture timm itself defines.

    A name timm resolves elsewhere (``hf-hub:someone/model``, ``timm/...``) would have timm fetch code and
    weights from the Hugging Face Hub: a checkpoint or config naming one is refused before anything is built."""
    spec(name)
    timm_name = timm_name or BACKBONES[name].timm_name
    if ":" in timm_name or "/" in timm_name or not timm.is_model(timm_name):
        raise BadInput(f"{where}={timm_name!r}: not an architecture timm defines (backbone {name!r} is "
                       f"{BACKBONES[name].timm_name}); names that timm fetches from a hub are refused, never fetched")
    return timm_name


def last_blocks(name: str, backbone: nn.Module) -> list[nn.Module]:
    """The modules stage 2 unfreezes for backbone `name` (see the module docstring)."""
    return spec(name).last_blocks(backbone)


def _hub_reachable(timeout: float = 2.0) -> bool:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _cached_hub_file(hf_hub_id: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model.safetensors", "pytorch_model.bin"):
        path = try_to_load_from_cache(hf_hub_id, filename)
        if isinstance(path, str):
            return path
    return None


def _missing_weights_message(timm_name: str, hf_hub_id: str | None) -> str:
    where = f"https://huggingface.co/{hf_hub_id}" if hf_hub_id else f"timm's source for {timm_name}"
    return (
        f"backbone.pretrained=true: no ImageNet weights for {timm_name} — not in the Hugging Face cache "
        f"and the hub cannot be reached (offline). Supply them in one of these ways:\n"
        f"  1. download model.safetensors from {where} and pass backbone.weights=/path/to/model.safetensors;\n"
        f"  2. on a machine with internet run `python -c \"import timm; timm.create_model('{timm_name}', "
        f"pretrained=True)\"` and copy its ~/.cache/huggingface (or $HF_HOME) here;\n"
        f"  3. train from scratch with backbone.pretrained=false (stage 0 then stands in for ImageNet)."
    )


def create_backbone(name: str, timm_name: str | None = None, pretrained: bool = False,
                    weights: str | Path | None = None, image_size: int | None = None) -> nn.Module:
    """A timm feature extractor (``num_classes=0``) for backbone `name`.

    `weights` (a file) wins over `pretrained`; `pretrained` alone uses an installed weights package
    (``bcc.models.imagenet_weights``), else the HF cache, or the hub when reachable, else raises
    BackboneWeightsError at once.
    """
    s = spec(name)
    timm_name = check_timm_name(name, timm_name)
    kwargs: dict = {"num_classes": 0}
    if s.sized and image_size:
        kwargs["img_size"] = int(image_size)
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise BackboneWeightsError(f"backbone.weights={weights}: no such file")
        safe_load(path, what="backbone.weights")  # refuses pickled code before timm opens the file
        return timm.create_model(timm_name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs)
    if not pretrained:
        return timm.create_model(timm_name, pretrained=False, **kwargs)
    if packaged(timm_name) is not None:
        return load_packaged(timm.create_model(timm_name, pretrained=False, **kwargs), timm_name)
    pretrained_cfg = timm.models.get_pretrained_cfg(timm_name)
    hf_hub_id = pretrained_cfg.hf_hub_id if pretrained_cfg is not None else None
    cached = _cached_hub_file(hf_hub_id) if hf_hub_id else None
    if cached:
        return timm.create_model(timm_name, pretrained=True, pretrained_cfg_overlay={"file": cached}, **kwargs)
    if not _hub_reachable():
        raise BackboneWeightsError(_missing_weights_message(timm_name, hf_hub_id))
    return timm.create_model(timm_name, pretrained=True, **kwargs)


def weights_source(pretrained: bool, weights: str | Path | None) -> str:
    """How stage 1 starts, in the words reports use: a weights file, ImageNet, or stage 0."""
    if weights:
        return f"weights:{weights}"
    return "imagenet" if pretrained else "stage0"
