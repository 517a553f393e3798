"""The one safe way bcc opens a weights file: tensors and plain containers only, never pickled code.

``torch.load(weights_only=True)`` (or safetensors) for every path that reads weights: the stage
handover, ``ckpt_path=`` resume, ``backbone.weights=``, predict, explain, export. A file that carries
pickled objects (which would run code when unpickled) is refused with :class:`UnsafeCheckpointError`
naming it and the reason; a file that is not a checkpoint at all with :class:`CheckpointError`.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from bcc.core.errors import BadInput


class CheckpointError(BadInput):
    """The file is not a usable checkpoint (or not one at all); the message says what is wrong."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds pickled objects other than tensors and plain containers; it was not loaded."""


def safe_load(path: str | Path, what: str = "checkpoint") -> Any:
    """The file's content (a dict of tensors and plain values), loaded without executing any code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{what} {path}: not a readable safetensors file ({e})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" not in str(e):  # torch refused no code object: the bytes are not a pickle it can read
            raise CheckpointError(f"{what} {path}: not a readable PyTorch file (torch.load: "
                                  f"{_reason(e)})") from None
        raise UnsafeCheckpointError(
            f"{what} {path}: refused to load — it contains pickled objects other than tensors and plain "
            f"containers, which could execute code when unpickled (torch.load weights_only=True failed: "
            f"{_reason(e)}). Only load checkpoints you trust; a bcc checkpoint never needs this."
        ) from None
    except Exception as e:  # noqa: BLE001 — torch raises many types for bytes that are not a checkpoint
        raise CheckpointError(f"{what} {path}: not a readable PyTorch file ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None


def _reason(e: Exception) -> str:
    """The line of torch's weights_only message that says what it refused (e.g. "unsupported GLOBAL posix.system")."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    specific = [ln for ln in lines if "GLOBAL" in ln or "Unsupported operand" in ln or ln.startswith("Unsupported")]
    return (specific or lines or [type(e).__name__])[0]
