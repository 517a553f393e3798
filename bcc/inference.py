"""Load a trained checkpoint for inference and read images the way the network was trained on them.

    from bcc.inference import load_network, read_image
    net = load_network("outputs/demo/mobilenet/fold0/stage3/best.ckpt")   # eval mode, (N, 8) logits
    x, rgb = read_image("lesion.jpg", net.image_size)                      # (3, S, S) in [0, 1], uint8 RGB
    probs = torch.sigmoid(net(x[None]))                                    # columns in bcc.patterns.OUTPUTS

Checkpoints are read with ``torch.load(weights_only=True)``: only tensors and plain containers are
accepted, so a file carrying arbitrary pickled objects (which could run code when unpickled) is refused
with ``UnsafeCheckpointError`` instead of being executed. Both the Lightning checkpoints that
``bcc.train`` writes (``state_dict`` keys ``net.*`` plus ``hyper_parameters`` of ``bcc.model``) and a
plain ``{"state_dict": net.state_dict(), "hyper_parameters": {...}}`` are understood.
"""
from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from bcc.network import MultitaskNet

DEFAULT_IMAGE_SIZE = 224
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class CheckpointError(ValueError):
    """The file is not a bcc checkpoint (or not a checkpoint at all); the message says what is wrong."""


class UnsafeCheckpointError(CheckpointError):
    """The checkpoint holds pickled objects other than tensors and plain containers; it was not loaded."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, loaded with ``weights_only=True`` (never executes pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (runs write <output_dir>/<backbone>/fold<k>/"
                              f"stage<s>/best.ckpt)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f"{path}: refused to load — it contains pickled objects other than tensors and plain containers, "
            f"which could execute code when unpickled (torch.load weights_only=True failed: "
            f"{str(e).splitlines()[0]}). Only load checkpoints you trust; a bcc checkpoint never needs this."
        ) from e
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({e})") from e
    if not isinstance(ckpt, Mapping) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: no 'state_dict' in it; expected a checkpoint written by bcc.train")
    return dict(ckpt)


def _net_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if any(k.startswith("net.") for k in state):
        return {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
    return dict(state)


def load_network(checkpoint_path: str | Path, device: str | torch.device = "cpu",
                 channels_last: bool | None = None) -> MultitaskNet:
    """The checkpoint's ``MultitaskNet`` in eval mode: float images in [0, 1] (N, 3, S, S) → (N, 8) logits.

    Logit columns follow ``bcc.patterns.OUTPUTS`` (bcc, PN, U, ON, MG, ML, SW, AT). The returned net
    carries ``image_size`` (the training input size S; 224 where the checkpoint does not say) and
    ``checkpoint_path``. No weights are downloaded: the architecture is built bare and filled from the
    checkpoint. `channels_last` defaults to what the model was trained with (faster on CPU).
    """
    path = Path(checkpoint_path)
    ckpt = read_checkpoint(path)
    hp = dict(ckpt.get("hyper_parameters") or {})
    backbone = dict(hp.get("backbone") or {})
    if "name" not in backbone:
        raise CheckpointError(f"{path}: hyper_parameters.backbone.name missing; cannot tell which architecture "
                              f"to build (expected a checkpoint written by bcc.train)")
    image_size = int(hp.get("image_size") or DEFAULT_IMAGE_SIZE)
    net = MultitaskNet.build(backbone["name"], backbone.get("timm_name"), pretrained=False,
                             dropout=float(hp.get("dropout", 0.3)), image_size=image_size)
    try:
        net.load_state_dict(_net_state(ckpt["state_dict"]), strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit backbone {backbone['name']!r} "
                              f"({backbone.get('timm_name')}): {str(e).splitlines()[0]}") from e
    net.image_size = image_size
    net.checkpoint_path = str(path)
    if channels_last is None:
        channels_last = bool(hp.get("channels_last", False))
    net.to(device)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    return net.eval()


def decode_image(path: str | Path) -> np.ndarray:
    """The image as an (H, W, 3) uint8 RGB array at its own size."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def to_input(rgb: np.ndarray, size: int) -> torch.Tensor:
    """(3, size, size) float tensor in [0, 1], resized like training (``bcc.image_cache``: PIL bilinear)."""
    im = Image.fromarray(rgb)
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)


def read_image(path: str | Path, size: int = DEFAULT_IMAGE_SIZE) -> tuple[torch.Tensor, np.ndarray]:
    """``(input tensor (3, size, size) in [0, 1], original RGB uint8 (H, W, 3))`` for one image file."""
    rgb = decode_image(path)
    return to_input(rgb, size), rgb


def list_images(path: str | Path) -> list[Path]:
    """One image file, or the image files of a folder (recursively, sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"input {path}: no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"input {path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in it")
    return files
