"""A trained network from a bcc checkpoint, read safely (``bcc.models.serialization``).

    from bcc.models.checkpoint import load_network
    from bcc.data.images import read_image
    net = load_network("outputs/demo/mobilenet/fold0/stage3/best.ckpt")   # eval mode, (N, 8) logits
    x, rgb = read_image("lesion.jpg", net.image_size)                      # (3, S, S) in [0, 1], uint8 RGB
    probs = torch.sigmoid(net(x[None]))                                    # columns in bcc.core.patterns.OUTPUTS

A bcc checkpoint is a Lightning checkpoint written by ``bcc.train``: ``state_dict`` keys ``net.*`` and
``hyper_parameters.network`` (``MultitaskNet.spec``: backbone name, timm name, dropout, input size).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from bcc.core.errors import BadInput
from bcc.data.images import IMAGE_SIZE, Preprocess
from bcc.models.backbones import check_timm_name
from bcc.models.network import MultitaskNet
from bcc.models.serialization import CheckpointError, UnsafeCheckpointError, safe_load

__all__ = ["CheckpointError", "UnsafeCheckpointError", "load_network", "load_weights", "read_checkpoint"]


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, loaded with ``weights_only=True`` (never executes pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (runs write <output_dir>/<backbone>/fold<k>/"
                              f"stage<s>/best.ckpt)")
    ckpt = safe_load(path)
    if not isinstance(ckpt, Mapping) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: no 'state_dict' in it; expected a checkpoint written by bcc.train")
    return dict(ckpt)


def network_spec(path: str | Path, ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """``MultitaskNet.spec`` stored in a checkpoint (what to build before filling in the weights)."""
    spec = dict((ckpt.get("hyper_parameters") or {}).get("network") or {})
    if "backbone" not in spec:
        raise CheckpointError(f"{path}: hyper_parameters.network.backbone missing; cannot tell which "
                              f"architecture to build (expected a checkpoint written by bcc.train)")
    try:
        check_timm_name(str(spec["backbone"]), spec.get("timm_name"), "network.timm_name")
    except BadInput as e:
        raise CheckpointError(f"{path}: {e}") from None
    size = spec.get("image_size")
    if isinstance(size, (int, float)) and not isinstance(size, bool) and not IMAGE_SIZE[0] <= size <= IMAGE_SIZE[1]:
        raise CheckpointError(f"{path}: network.image_size={size!r} is not an input side in pixels "
                              f"({IMAGE_SIZE[0]}..{IMAGE_SIZE[1]}); not a checkpoint as bcc.train writes it")
    return spec


def _net_state(state: Mapping[str, torch.Tensor], prefix: str = "net.") -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_weights(net: MultitaskNet, path: str | Path, backbone_only: bool = False) -> None:
    """Fill `net` with a checkpoint's network weights (all, or only the backbone's: the stage 0 → 1 handover),
    and take over its record of what the heads were trained on (none, with the backbone only)."""
    ckpt = read_checkpoint(path)
    state = _net_state(ckpt["state_dict"], "net.backbone." if backbone_only else "net.")
    target = net.backbone if backbone_only else net
    try:
        target.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit this network ({net.backbone_name}): "
                              f"{str(e).splitlines()[0]}") from None
    if backbone_only:
        net.forget_heads()
    elif "trained" in (spec := network_spec(path, ckpt)):
        net.spec["trained"] = dict(spec["trained"])


def load_network(checkpoint_path: str | Path, device: str | torch.device = "cpu",
                 channels_last: bool | None = None) -> MultitaskNet:
    """The checkpoint's ``MultitaskNet`` in eval mode: float images in [0, 1] (N, 3, S, S) → (N, 8) logits.

    The returned net carries ``image_size`` (the training input size S; 224 where the checkpoint does
    not say), ``preprocess`` (how a picture becomes its input), ``trained`` (which outputs were trained
    with labels) and ``checkpoint_path``. No weights are downloaded: the architecture is built bare and
    filled from the checkpoint. `channels_last` defaults to what the model was trained with.
    """
    path = Path(checkpoint_path)
    ckpt = read_checkpoint(path)
    spec = network_spec(path, ckpt)
    try:
        pre = Preprocess.of(spec)
    except (BadInput, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: hyper_parameters.network: {e}") from None
    image_size = pre.size
    try:
        net = MultitaskNet.build(spec["backbone"], spec.get("timm_name"), pretrained=False,
                                 dropout=float(spec.get("dropout", 0.3)), image_size=image_size,
                                 resize=pre.resize, colour=pre.colour, gradcam_layer=spec.get("gradcam_layer"),
                                 mean=spec.get("mean"), std=spec.get("std"))
        net.load_state_dict(_net_state(ckpt["state_dict"]), strict=True)
        if "trained" in spec:
            net.spec["trained"] = dict(spec["trained"])
    except BadInput as e:
        raise CheckpointError(f"{path}: hyper_parameters.network: {e}") from None
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: weights do not fit backbone {spec['backbone']!r} "
                              f"({spec.get('timm_name')}): {str(e).splitlines()[0]}") from None
    net.image_size = image_size
    net.checkpoint_path = str(path)
    hp = ckpt.get("hyper_parameters") or {}
    if channels_last is None:
        channels_last = bool(hp.get("channels_last", False))
    net.to(device)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    return net.eval()
