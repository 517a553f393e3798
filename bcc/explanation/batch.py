"""Explain a folder of images: an overlay per output and image, the probabilities, optionally the raw maps.

``explain_files`` writes ``<stem>_<output>.png`` overlays (one per output in ``OUTPUTS`` order),
``explanations.csv`` (probabilities) and, with `save_raw`, ``<stem>_maps.npy`` (float32, 8 x H x W at
the image's own resolution, OUTPUTS order). ``python -m bcc.explain`` (``bcc.cli.explain``) runs it.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from bcc.core.errors import BadInput
from bcc.core.io import write_csv
from bcc.core.patterns import OUTPUTS
from bcc.data.images import IMAGE_SUFFIXES, read_rgb, to_input
from bcc.explanation.gradcam import postprocess, raw_cams
from bcc.explanation.render import overlay
from bcc.models.network import MultitaskNet


def list_images(path: str | Path) -> list[Path]:
    """One image file, or the image files of a folder (recursively, sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise BadInput(f"input={path}: no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise BadInput(f"input={path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in it")
    return files


def output_stem(path: Path, root: Path | None) -> str:
    """The name an input's outputs get: its path under `root` with folders joined by ``__``."""
    rel = path.relative_to(root) if root is not None and root.is_dir() else Path(path.name)
    return "__".join(rel.with_suffix("").parts)


def explain_files(net: MultitaskNet, files: Sequence[Path], out_dir: Path, save_raw: bool = False,
                  batch_size: int = 16, root: Path | None = None) -> pd.DataFrame:
    """Write overlays (and raw maps) for `files`; returns the probabilities table written as CSV."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for start in range(0, len(files), batch_size):
        chunk = list(files[start:start + batch_size])
        rgbs = [read_rgb(p)[0] for p in chunk]
        x = torch.stack([to_input(rgb, net.image_size) for rgb in rgbs])
        cams, logits = raw_cams(net, x)
        probs = torch.sigmoid(logits).cpu().numpy()
        for i, (path, rgb) in enumerate(zip(chunk, rgbs)):
            name = output_stem(path, root)
            maps = postprocess(cams[i:i + 1], rgb.shape[:2])[0].cpu().numpy()
            for k, output in enumerate(OUTPUTS):
                Image.fromarray(overlay(rgb, maps[k])).save(out_dir / f"{name}_{output}.png")
            if save_raw:
                np.save(out_dir / f"{name}_maps.npy", maps.astype(np.float32))
            rows.append({"image": str(path), "name": name, **{f"p_{o}": float(probs[i, k])
                                                              for k, o in enumerate(OUTPUTS)}})
    table = pd.DataFrame(rows)
    write_csv(table, out_dir / "explanations.csv")
    return table
