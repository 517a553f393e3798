"""Load and validate a dataset directory (the dataset contract, `docs/dataset.md`).

Every malformed input stops with a `DatasetError` that names the file, the CSV line and the fix, before
anything derived is written. CSV line numbers count the header as line 1, as an editor shows them.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from bcc.core.errors import BadInput
from bcc.core.patterns import CODES

IMAGE_COLUMNS = ("image_id", "image", "source")
IMAGE_OPTIONAL = ("group", "diagnosis")
ANNOTATION_COLUMNS = ("image_id", "rater") + CODES
LESION = "lesion"  # masks/<image_id>_lesion.png: the whole lesion (optional)


class DatasetError(BadInput):
    """A dataset file breaks the contract; the message says where and how to fix it."""


def _line(index: int) -> int:
    return int(index) + 2  # header is line 1


def _lines(mask: pd.Series, limit: int = 5) -> str:
    rows = [str(_line(i)) for i in np.flatnonzero(mask.to_numpy())[:limit]]
    more = int(mask.sum()) - len(rows)
    return ", ".join(rows) + (f" (+{more} more)" if more > 0 else "")


def read_csv(path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a contract CSV as strings, checking encoding, delimiter, emptiness and the column set."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found; every dataset needs it (see README, 'Plug in a dataset')")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 ({e.reason} at byte {e.start}); re-save the file as UTF-8 CSV") from e
    if not text.strip():
        raise DatasetError(f"{path}: file is empty; expected a header line {','.join(required)}")
    header = text.splitlines()[0]
    if "," not in header and len(required) > 1:
        try:
            delim = csv.Sniffer().sniff(header, delimiters=";\t|").delimiter
            hint = f"it looks {delim!r}-separated"
        except csv.Error:
            hint = "no comma found in the header"
        raise DatasetError(f"{path}: line 1: {hint}; the contract is comma-separated with header "
                           f"{','.join(required)}")
    df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", skipinitialspace=True)
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DatasetError(f"{path}: line 1: missing column(s) {missing}; the header must contain "
                           f"{','.join(required)}")
    unknown = [c for c in df.columns if c not in required + optional]
    if unknown:
        raise DatasetError(f"{path}: line 1: unknown column(s) {unknown}; allowed: {list(required + optional)} "
                           f"(pattern codes are {list(CODES)}); rename or drop them")
    if df.empty:
        raise DatasetError(f"{path}: header only, no data rows")
    return df.apply(lambda s: s.str.strip())


def _check_unique(df: pd.DataFrame, keys: list[str], path: Path) -> None:
    dup = df.duplicated(keys, keep=False)
    if dup.any():
        first = df.loc[dup, keys].iloc[0].tolist()
        raise DatasetError(f"{path}: duplicate {'+'.join(keys)} {first} on lines {_lines(dup)}; keep one row each")


def _check_binary(df: pd.DataFrame, cols: tuple[str, ...], path: Path) -> None:
    for col in cols:
        bad = ~df[col].isin(["0", "1", ""])
        if bad.any():
            value = df.loc[bad, col].iloc[0]
            raise DatasetError(f"{path}: column {col}, line {_lines(bad)}: value {value!r} is not 1, 0 or "
                               f"blank (blank = not rated)")


def _image_size(path: Path, where: str) -> tuple[int, int]:
    if not path.is_file():
        raise DatasetError(f"{where}: file {path} does not exist; fix the path or add the file")
    if path.stat().st_size == 0:
        raise DatasetError(f"{where}: file {path} is empty (0 bytes); replace it or drop its row")
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DatasetError(f"{where}: cannot read image {path} ({e}); re-export it as JPEG/PNG or drop its row") \
            from e


@dataclass
class Dataset:
    """A validated dataset: image table, per-rater annotations and the available masks."""

    root: Path
    images: pd.DataFrame
    annotations: pd.DataFrame
    masks: dict[str, dict[str, Path]] = field(default_factory=dict)

    def image_path(self, image_id: str) -> Path:
        return self.root / self.images.set_index("image_id").at[image_id, "image"]

    @property
    def image_paths(self) -> list[Path]:
        return [self.root / p for p in self.images["image"]]


def load_image_table(root: Path, check_files: bool = True) -> pd.DataFrame:
    """images.csv, validated (columns, ids, diagnosis values; with `check_files` every image readable)."""
    path = root / "images.csv"
    df = read_csv(path, IMAGE_COLUMNS, IMAGE_OPTIONAL)
    empty = df["image_id"].eq("")
    if empty.any():
        raise DatasetError(f"{path}: blank image_id on line {_lines(empty)}")
    _check_unique(df, ["image_id"], path)
    if "diagnosis" in df.columns:
        _check_binary(df, ("diagnosis",), path)
    if check_files:
        for i, rel in enumerate(df["image"]):
            _image_size(root / rel, f"{path}: line {_line(i)}")
    return df


def load_annotations(root: Path, image_ids: pd.Series) -> pd.DataFrame:
    path = root / "annotations.csv"
    df = read_csv(path, ANNOTATION_COLUMNS)
    _check_binary(df, CODES, path)
    _check_unique(df, ["image_id", "rater"], path)
    unknown = ~df["image_id"].isin(image_ids)
    if unknown.any():
        raise DatasetError(f"{path}: line {_lines(unknown)}: image_id {df.loc[unknown, 'image_id'].iloc[0]!r} "
                           f"is not in images.csv; add the image or drop the annotation")
    unrated = ~image_ids.isin(df["image_id"])
    if unrated.any():
        raise DatasetError(f"{root / 'images.csv'}: line {_lines(unrated)}: image "
                           f"{image_ids[unrated].iloc[0]!r} has no row in annotations.csv; annotate it or drop it")
    return df


def find_masks(root: Path, images: pd.DataFrame) -> dict[str, dict[str, Path]]:
    """Map image_id → {"all" | CODE | "lesion": mask path}; each mask must match its image's size.

    ``<id>.png`` is the union of the pattern regions, ``<id>_<CODE>.png`` one code's region and
    ``<id>_lesion.png`` (optional) the whole lesion — Table 4's background "lesion minus the patterns".
    """
    mask_dir = root / "masks"
    if not mask_dir.is_dir():
        return {}
    known = set(images["image_id"])
    sizes = {}
    masks: dict[str, dict[str, Path]] = {}
    for p in sorted(mask_dir.glob("*.png")):
        stem, code = p.stem, "all"
        if stem not in known and "_" in stem and stem.rsplit("_", 1)[1] in (*CODES, LESION):
            stem, code = stem.rsplit("_", 1)
        if stem not in known:
            raise DatasetError(f"{p}: no image {stem!r} in images.csv; masks are named <image_id>.png, "
                               f"<image_id>_<CODE>.png with CODE in {list(CODES)} or <image_id>_{LESION}.png")
        if stem not in sizes:
            sizes[stem] = _image_size(root / images.set_index("image_id").at[stem, "image"], f"{p}")
        size = _image_size(p, f"{p}")
        if size != sizes[stem]:
            raise DatasetError(f"{p}: mask is {size[0]}x{size[1]} but its image is {sizes[stem][0]}x{sizes[stem][1]};"
                               f" masks must have the image's size")
        masks.setdefault(stem, {})[code] = p
    return masks


def load_dataset(root: Path, check_files: bool = True) -> Dataset:
    """Validate and load `root`; raises DatasetError naming file, line and fix on the first problem."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset directory not found (make one with `python -m bcc.data.synthetic "
                           f"--out {root}` or point data.root at your dataset)")
    images = load_image_table(root, check_files)
    annotations = load_annotations(root, images["image_id"])
    masks = find_masks(root, images) if check_files else {}
    return Dataset(root=root, images=images, annotations=annotations, masks=masks)
