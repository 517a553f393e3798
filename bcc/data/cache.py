"""Decoded, resized images held as one uint8 array, so no image is decoded twice.

``decoded_images(root, rel_paths, preprocess, aspects)`` returns an (N, size, size, 3) uint8 array. It is
memoised in the process (a multirun or ``stage=all`` decodes once) and stored beside the dataset as
``<root>/.cache/images-<size>px-<digest>.npy`` (written atomically; the digest covers the image list,
sizes, modification times, aspects and the preprocessing, so an edited dataset is decoded afresh). Each
image is read by ``bcc.data.images`` (EXIF orientation applied) and made into the network's view
(``network_view``: the spec's resize and colour constancy).
Every path must resolve inside `root` unless ``allow_outside`` (the dataset contract's rule), and a file
that cannot be read is a :class:`~bcc.data.contract.DatasetError` naming it.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bcc.core.io import atomic_path
from bcc.data.contract import DatasetError, inside
from bcc.data.images import Preprocess, UnreadableImage, network_view, read_rgb

_MEMORY: dict[tuple[str, int, str], np.ndarray] = {}
_MAX_MEMORY = 4  # datasets kept in memory at once


FIX = "replace the file or drop its row from images.csv"


def _decode(path: Path, preprocess: Preprocess, aspect: float | None) -> np.ndarray:
    try:
        return network_view(read_rgb(path)[0], preprocess, aspect)
    except UnreadableImage as e:
        raise DatasetError(f"{path}: cannot read image ({e}); {FIX}") from None
    except OSError as e:  # gone or unreadable since the dataset was validated
        raise DatasetError(f"{path}: cannot read image ({e.strerror or e}); {FIX}") from None


def decode_digest(root: Path, rel_paths: Sequence[str], preprocess: Preprocess,
                  aspects: Sequence[float | None]) -> str:
    """What the decoded array depends on: the image list, sizes, modification times, aspects, preprocessing."""
    h = hashlib.sha256(f"{preprocess.size}/upright".encode())  # "upright": EXIF orientation applied
    if (preprocess.resize, preprocess.colour) != ("square", "none") or any(aspects):
        h.update(f"{preprocess.resize}/{preprocess.colour}/{list(aspects)}".encode())
    for rel in rel_paths:
        try:
            st = (root / rel).stat()
        except OSError as e:
            raise DatasetError(f"{root / rel}: cannot read image ({e.strerror or e}); {FIX}") from None
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def decoded_images(root: Path, rel_paths: Sequence[str], preprocess: Preprocess | int, disk_cache: bool = True,
                   workers: int = 2, allow_outside: bool = False,
                   aspects: Sequence[float | None] | None = None) -> np.ndarray:
    """(N, size, size, 3) uint8: the network's view of the images `rel_paths` (relative to `root`; `aspects`:
    images.csv's ``aspect`` per image, None = the file's own), from memory, disk cache or decoded."""
    root = Path(root).resolve()
    pre = Preprocess.of(preprocess)
    size = pre.size
    aspects = list(aspects) if aspects is not None else [None] * len(rel_paths)
    for rel in rel_paths:
        inside(root, rel, f"{root / 'images.csv'}", allow_outside, base=root)
    digest = decode_digest(root, rel_paths, pre, aspects)
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
            arr = np.stack(list(pool.map(lambda ra: _decode(root / ra[0], pre, ra[1]), zip(rel_paths, aspects, strict=True))))
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
