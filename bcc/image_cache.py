"""Decoded, resized images held as one uint8 array, so no image is decoded twice.

``load_images(root, rel_paths, size)`` returns an (N, size, size, 3) uint8 array. It is memoised in the
process (a multirun or ``stage=all`` decodes once) and stored beside the dataset as
``<root>/.cache/images-<size>px-<digest>.npy`` (written atomically; the digest covers the image list,
sizes and modification times, so an edited dataset is decoded afresh). Images are resized to a square
(bilinear, antialiased), as the paper's framework does.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from bcc.io import atomic_path

_MEMORY: dict[tuple[str, int, str], np.ndarray] = {}
_MAX_MEMORY = 4  # datasets kept in memory at once


def _decode(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        return np.asarray(im, dtype=np.uint8)


def _digest(root: Path, rel_paths: Sequence[str], size: int) -> str:
    h = hashlib.sha256(f"{size}".encode())
    for rel in rel_paths:
        st = (root / rel).stat()
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def load_images(root: Path, rel_paths: Sequence[str], size: int, disk_cache: bool = True,
                workers: int = 2) -> np.ndarray:
    root = Path(root).resolve()
    digest = _digest(root, rel_paths, size)
    key = (str(root), int(size), digest)
    if key in _MEMORY:
        return _MEMORY[key]
    path = root / ".cache" / f"images-{size}px-{digest}.npy"
    arr = None
    if disk_cache and path.is_file():
        try:
            arr = np.load(path, mmap_mode=None)
        except (OSError, ValueError):
            arr = None  # a damaged cache file is rebuilt below
        if arr is not None and arr.shape != (len(rel_paths), size, size, 3):
            arr = None
    if arr is None:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            arr = np.stack(list(pool.map(lambda rel: _decode(root / rel, size), rel_paths)))
        if disk_cache:
            try:
                with atomic_path(path) as tmp, open(tmp, "wb") as f:
                    np.save(f, arr)
            except OSError:
                pass  # a read-only dataset: keep the in-memory copy only
    while len(_MEMORY) >= _MAX_MEMORY:
        _MEMORY.pop(next(iter(_MEMORY)))
    _MEMORY[key] = arr
    return arr
