"""What a dataset's files are: decoded once and remembered, hashed once, compared by content.

Every image and mask is decoded in full once — what training would read — and the outcome (size, SHA-256)
is remembered in ``.cache/decoded.json`` (:class:`DecodeStamp`), so a dataset is not decoded or hashed again
until a file changes. The content hash of a whole dataset (:func:`dataset_hash`, what a run records it was
trained on) and the pictures shown under two ids (:func:`duplicate_images`) read those digests.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import pandas as pd
import PIL
from PIL import Image, UnidentifiedImageError

from bcc.core.io import sha256_file, write_text
from bcc.data.errors import DatasetError
from bcc.data.images import UnreadableImage, read_mask, read_rgb
from bcc.data.paths import inside

__all__ = ["DATA_FILES", "DecodeStamp", "dataset_hash", "describe_duplicates", "duplicate_images"]

DATA_FILES = ("images.csv", "annotations.csv", "labels.csv", "splits.csv")


class DecodeStamp:
    """Which files decoded in full, and at what size, keyed by each file's identity and change stamp.

    The key is (device, inode, size, mtime, ctime): any write, truncation or replacement of a file changes
    it (ctime cannot be set back, unlike mtime), so a file is decoded again only when it may have
    changed. Written beside the dataset (``.cache/decoded.json``), after a whole validation succeeded.
    """

    def __init__(self, root: Path):
        self.path = root / ".cache" / "decoded.json"
        self.reader = f"read_rgb/read_mask, one frame, Pillow {PIL.__version__}"  # another decoder may judge anew
        try:
            stored = json.loads(self.path.read_text())
            self.known = stored["files"] if stored.get("reader") == self.reader else {}
        except (OSError, ValueError, KeyError, TypeError):
            self.known = {}  # none yet, or a damaged one: decode everything
        self.seen: dict[str, list] = {}  # the file key (_key), width, height, sha256

    @staticmethod
    def _key(path: Path) -> list[int]:
        st = path.stat()
        return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]

    def recall(self, kind: str, rel: str, path: Path) -> tuple[int, int] | None:
        """The size stored for `path` (`rel` in the dataset), if the file has not changed since."""
        try:
            key = self._key(path)
        except OSError:
            return None  # missing: size() says so
        entry = self.known.get(f"{kind}:{rel}")
        if not isinstance(entry, list) or len(entry) != 8 or entry[:5] != key:
            return None
        self.seen[f"{kind}:{rel}"] = entry
        return entry[5], entry[6]

    def size(self, kind: str, rel: str, path: Path, where: str) -> tuple[int, int]:
        """(width, height) of the image or mask `path` (`rel` in the dataset) as bcc reads it, decoding it
        unless known."""
        known = self.recall(kind, rel, path)
        if known is not None:
            return known
        if not path.is_file():
            problem = "is not a file" if path.exists() else "does not exist"
            raise DatasetError(f"{where}: file {path} {problem}; fix the path or add the file")
        key = self._key(path)
        w, h = _decoded_size(kind, path, where)
        self.seen[f"{kind}:{rel}"] = [*key, w, h, sha256_file(path)]
        return w, h

    def digest(self, rel: str, path: Path) -> str:
        """SHA-256 (hex) of image `rel`'s bytes: the one stored when it was decoded, while the file is
        unchanged; else read now."""
        entry = self.seen.get(f"image:{rel}")
        if entry is None and self.recall("image", rel, path) is not None:
            entry = self.seen[f"image:{rel}"]
        return str(entry[7]) if entry is not None else sha256_file(path)

    def save(self) -> None:
        if self.seen == self.known:
            return
        with contextlib.suppress(OSError):  # a read-only dataset: decoded again next time
            write_text(json.dumps({"reader": self.reader, "files": self.seen}, sort_keys=True), self.path)


def _decoded_size(kind: str, path: Path, where: str) -> tuple[int, int]:
    """Decode the whole file as training will (truncation shows only here) and return its size."""
    if path.stat().st_size == 0:
        raise DatasetError(f"{where}: file {path} is empty (0 bytes); replace it or drop its row")
    try:
        if kind == "image":
            rgb, _ = read_rgb(path, frames_ok=False)
            return rgb.shape[1], rgb.shape[0]
        mask = read_mask(path)
        return mask.shape[1], mask.shape[0]
    except UnreadableImage as e:
        reason = str(e)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, EOFError, ValueError) as e:
        reason = f"corrupt or truncated ({e})"  # read_mask's errors: what Pillow raises on bad data
    fix = "re-export it as JPEG/PNG or drop its row" if kind == "image" else "re-export it as PNG or delete it"
    raise DatasetError(f"{where}: cannot read {kind} {path} ({reason}); {fix}")


def duplicate_images(root: Path, images: pd.DataFrame, stamp: DecodeStamp | None = None) -> list[list[str]]:
    """The image_ids that show the same picture, as lists (two rows naming one file, or byte-identical files
    under two ids): one picture must never be in a training fold and a test fold at once, so ``bcc.folds``
    keeps each list in one fold. Hashes come from the decode stamp where it has them."""
    stamp = stamp or DecodeStamp(Path(root))
    by_digest: dict[str, list[str]] = {}
    for image_id, rel in zip(images["image_id"], images["image"], strict=True):
        path = Path(root) / rel
        if path.is_file():
            by_digest.setdefault(stamp.digest(rel, path), []).append(image_id)
    return [ids for ids in by_digest.values() if len(ids) > 1]


def describe_duplicates(root: Path, duplicates: list[list[str]], limit: int = 3) -> str:
    """One line about the duplicates: how many pictures, a few examples, what is done about them."""
    shown = "; ".join(", ".join(ids) for ids in duplicates[:limit])
    more = f" (+{len(duplicates) - limit} more)" if len(duplicates) > limit else ""
    return (f"{Path(root) / 'images.csv'}: {len(duplicates)} picture(s) appear under more than one image_id (the same "
            f"file, or the same bytes): {shown}{more}; each set is kept in one fold by bcc.folds (drop the copies "
            f"unless they are meant)")


def dataset_hash(root: str | Path | None, allow_outside: bool = False) -> str:
    """``sha256:<hex>`` over the dataset's CSV files (labels and folds included) and the digest of every image
    images.csv lists (each inside the dataset folder unless `allow_outside`; the decode stamp's digest while
    the file is unchanged), or ``unknown``: what a run was trained on, so that runs on different data (a copy
    with changed ratings) are never averaged together."""
    if root is None or not (Path(root) / "images.csv").is_file():
        return "unknown"
    root = Path(root)
    h = hashlib.sha256()
    for name in DATA_FILES:
        if (root / name).is_file():
            h.update(name.encode() + b"\0" + (root / name).read_bytes())
    base, stamp = root.resolve(), DecodeStamp(root)
    for rel in sorted(pd.read_csv(root / "images.csv", usecols=["image"], dtype=str, keep_default_na=False)["image"]):
        p = inside(root, rel, f"{root / 'images.csv'}", allow_outside, base=base)
        if p.is_file():
            h.update(rel.encode() + b"\0" + bytes.fromhex(stamp.digest(rel, p)))
    return "sha256:" + h.hexdigest()
