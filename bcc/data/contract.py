"""The dataset contract (`docs/dataset.md`): a dataset directory validated and loaded.

Every malformed input stops with a `DatasetError` that names the file, the line (as an editor counts it:
`bcc.data.csvfile`) and the fix, before anything derived is written. The jobs are each in their own module:
reading the CSVs (`csvfile`), the value checks (`schema`, pandera), ids and paths (`paths`: every path must
resolve inside the dataset directory unless ``allow_outside``), decoding and hashing the files once
(`stamps`). This module puts them together: the two tables, the masks, the :class:`Dataset`.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bcc.core.patterns import CODES
from bcc.data.csvfile import read_csv
from bcc.data.errors import DatasetError, DatasetWarning
from bcc.data.paths import inside, unfit_id
from bcc.data.schema import Failure, Rule, TableSchema, not_blank, unique
from bcc.data.stamps import DecodeStamp, dataset_hash, describe_duplicates, duplicate_images

__all__ = ["ANNOTATION_COLUMNS", "ASPECT_RANGE", "IMAGE_COLUMNS", "IMAGE_OPTIONAL", "LESION", "MASK_SUFFIX",
           "Dataset", "DatasetError", "DatasetWarning", "dataset_hash", "describe_duplicates", "duplicate_images",
           "find_masks", "inside", "load_annotations", "load_dataset", "load_image_table", "mask_name"]

IMAGE_COLUMNS = ("image_id", "image", "source")
IMAGE_OPTIONAL = ("group", "diagnosis", "aspect")
#: `aspect`: the width / height the picture had before it was resized without keeping its proportions
#: (HAM10000's 600 x 450 photographs distributed at 224 x 224: 1.3333); blank = the file's own.
ASPECT_RANGE = (0.2, 5.0)
ANNOTATION_COLUMNS = ("image_id", "rater", *CODES)
LESION = "lesion"  # masks/<image_id>_lesion.png: the whole lesion (optional)
MASK_SUFFIX = ".png"  # masks are lossless; the suffix is matched in any case (.PNG too)


def _binary(column: str) -> Rule:
    return Rule(f"{column} binary", lambda s: s.isin(["0", "1", ""]),
                lambda f: f"{f.path}: column {f.column}, line {f.listed}: value {f.value!r} is not 1, 0 or blank "
                          f"(blank = not rated)", column)


def _aspect_ok(s: pd.Series) -> pd.Series:
    low, high = ASPECT_RANGE
    return s.eq("") | pd.to_numeric(s.replace("", "nan"), errors="coerce").between(low, high)


IMAGES = TableSchema([
    not_blank("image_id", lambda f: f"{f.path}: blank image_id on line {f.listed}; give every image an id"),
    unique(["image_id"]),
    Rule("image_id names files", lambda v: unfit_id(v) is None,
         lambda f: f"{f.path}: line {f.first}: image_id {f.value!r} {unfit_id(f.value)}; ids become file names "
                   f"(masks/<image_id>.png, twins/<image_id>.png): rename it (letters, digits, '-', '_', '.'; not "
                   f"starting with '.')", "image_id", element_wise=True),
    _binary("diagnosis"),
    Rule("aspect in range", _aspect_ok,
         lambda f: f"{f.path}: column aspect, line {f.listed}: value {f.value!r} is not a width/height ratio in "
                   f"[{ASPECT_RANGE[0]:g}, {ASPECT_RANGE[1]:g}]; give the proportions the picture had before it was "
                   f"resized (e.g. 1.3333 for 4:3), or leave it blank (the file's own)", "aspect"),
])


def annotations_schema(image_ids: pd.Series) -> TableSchema:
    """annotations.csv's rules: a named rater, codes 1/0/blank, one row per image and rater, known images."""
    return TableSchema([
        not_blank("rater", lambda f: f"{f.path}: blank rater on line {f.listed}; name the rater of every row"),
        *(_binary(c) for c in CODES),
        unique(["image_id", "rater"]),
        Rule("image_id in images.csv", lambda s: s.isin(image_ids),
             lambda f: f"{f.path}: line {f.listed}: image_id {f.value!r} is not in images.csv; add the image or drop "
                       f"the annotation", "image_id"),
    ])


def _unrated(f: Failure) -> str:
    return (f"{f.path}: line {f.listed}: image {f.value!r} has no row in annotations.csv; annotate it or drop it")


def _unlabelled(f: Failure) -> str:
    return (f"{f.path}: line {f.listed}: image {f.value!r} has every code blank in annotations.csv and no "
            f"diagnosis, so it has no label; rate it or give its diagnosis")


@dataclass
class Dataset:
    """A validated dataset: image table, per-rater annotations and the available masks (tables by line)."""

    root: Path
    images: pd.DataFrame
    annotations: pd.DataFrame
    masks: dict[str, dict[str, Path]] = field(default_factory=dict)
    duplicates: list[list[str]] = field(default_factory=list)  # image_ids showing the same picture (same bytes)

    def image_path(self, image_id: str) -> Path:
        return self.root / self.images.set_index("image_id").at[image_id, "image"]

    def aspect(self, image_id: str) -> float | None:
        """images.csv's ``aspect`` of an image (None: blank or no such column: the file's own proportions)."""
        if "aspect" not in self.images.columns:
            return None
        value = self.images.set_index("image_id").at[image_id, "aspect"]
        return float(value) if value else None

    @property
    def image_paths(self) -> list[Path]:
        return [self.root / p for p in self.images["image"]]


def load_image_table(root: Path, check_files: bool = True, allow_outside: bool = False) -> pd.DataFrame:
    """images.csv, validated: columns, ids, diagnosis values and every path inside `root` (unless
    `allow_outside`); with `check_files` every image decoded in full (see :class:`DecodeStamp`)."""
    root = Path(root)
    df = _image_table(root, allow_outside)
    if check_files:
        stamp = DecodeStamp(root)
        _image_sizes(root, df, stamp)
        stamp.save()
    return df


def _image_table(root: Path, allow_outside: bool) -> pd.DataFrame:
    path = root / "images.csv"
    df = IMAGES.validate(read_csv(path, IMAGE_COLUMNS, IMAGE_OPTIONAL), path)
    base = root.resolve()
    for line, rel in df["image"].items():
        inside(root, rel, f"{path}: line {line}", allow_outside, base=base)
    return df


def _image_sizes(root: Path, df: pd.DataFrame, stamp: DecodeStamp, workers: int = 2) -> dict[str, tuple[int, int]]:
    """image_id → (width, height) upright; the first unreadable image (in file order) is the error."""
    path = root / "images.csv"
    sizes = [stamp.recall("image", rel, root / rel) for rel in df["image"]]
    todo = [(i, line, rel) for i, ((line, rel), size) in enumerate(zip(df["image"].items(), sizes, strict=True)) if size is None]
    if todo:
        with ThreadPoolExecutor(max(1, workers)) as pool:  # Pillow decodes without the GIL
            futures = [pool.submit(stamp.size, "image", rel, root / rel, f"{path}: line {line}")
                       for _, line, rel in todo]
            try:
                for (i, _, _), f in zip(todo, futures, strict=True):
                    sizes[i] = f.result()
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    return dict(zip(df["image_id"], sizes, strict=True))


def load_annotations(root: Path, images: pd.DataFrame) -> pd.DataFrame:
    """annotations.csv, validated against the image table: every row's image listed, every image rated."""
    path = root / "annotations.csv"
    df = annotations_schema(images["image_id"]).validate(read_csv(path, ANNOTATION_COLUMNS), path)
    TableSchema([Rule("image rated", lambda s: s.isin(df["image_id"]), _unrated, "image_id")]).validate(
        images, root / "images.csv")
    return df


def _check_labelled(root: Path, images: pd.DataFrame, annotations: pd.DataFrame) -> None:
    """Every image needs a rated code or a diagnosis, or it has no label at all."""
    rated = annotations[list(CODES)].ne("").any(axis=1).groupby(annotations["image_id"]).any()
    labelled = images["image_id"].map(rated).astype(bool)
    if "diagnosis" in images.columns:
        labelled |= images["diagnosis"].ne("")
    TableSchema([Rule("image labelled", lambda s: labelled.loc[s.index], _unlabelled, "image_id")]).validate(
        images, root / "images.csv")


def mask_name(name: str, known: set[str]) -> tuple[str, str] | None:
    """(image_id, "all" | CODE | "lesion") of a mask file name, or None when it is no mask (not PNG)."""
    stem, suffix = os.path.splitext(name)
    if suffix.lower() != MASK_SUFFIX:
        return None
    if stem not in known and "_" in stem and stem.rsplit("_", 1)[1] in (*CODES, LESION):
        return stem.rsplit("_", 1)[0], stem.rsplit("_", 1)[1]
    return stem, "all"


def find_masks(root: Path, images: pd.DataFrame, sizes: dict[str, tuple[int, int]], stamp: DecodeStamp,
               allow_outside: bool = False) -> dict[str, dict[str, Path]]:
    """Map image_id → {"all" | CODE | "lesion": mask path}; each mask must match its image's size.

    ``<id>.png`` is the union of the pattern regions, ``<id>_<CODE>.png`` one code's region and
    ``<id>_lesion.png`` (optional) the whole lesion — Table 4's background "lesion minus the patterns".
    The suffix may be in any case (``.PNG``); other image files there are refused (masks are lossless).
    """
    if not (root / "masks").exists():
        return {}
    mask_dir = inside(root, "masks", f"{root}", allow_outside, what="folder")
    if not mask_dir.is_dir():
        raise DatasetError(f"{mask_dir}: not a folder; masks/ holds the mask files (or remove it)")
    known, base = set(images["image_id"]), root.resolve()
    masks: dict[str, dict[str, Path]] = {}
    for p in sorted(mask_dir.iterdir()):
        if p.name.startswith(".") or p.is_dir():
            continue
        parsed = mask_name(p.name, known)
        if parsed is None:
            if p.suffix.lower() in (".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"):
                raise DatasetError(f"{p}: masks must be PNG (lossless); convert it to {p.stem}.png")
            continue
        stem, code = parsed
        if stem not in known:
            raise DatasetError(f"{p}: no image {stem!r} in images.csv; masks are named <image_id>.png, "
                               f"<image_id>_<CODE>.png with CODE in {list(CODES)} or <image_id>_{LESION}.png")
        if code in masks.get(stem, {}):
            raise DatasetError(f"{p}: a second mask for {stem!r} {code} (also {masks[stem][code].name}); "
                               f"keep one of them")
        inside(root, f"masks/{p.name}", f"{p}", allow_outside, what="mask", base=base)
        size = stamp.size("mask", f"masks/{p.name}", p, f"{p}")
        if size != sizes[stem]:
            raise DatasetError(f"{p}: mask is {size[0]}x{size[1]} but its image is {sizes[stem][0]}x{sizes[stem][1]};"
                               f" masks must have the image's size")
        masks.setdefault(stem, {})[code] = p
    return masks


def load_dataset(root: Path, check_files: bool = True, allow_outside: bool = False,
                 write_stamp: bool = True) -> Dataset:
    """Validate and load `root`; raises DatasetError naming file, line and fix on the first problem.

    With `check_files`, every image and mask is decoded (once: see :class:`DecodeStamp`, saved when
    `write_stamp`; a tool only reading a dataset, like merge, leaves it untouched); paths must resolve
    inside `root` unless `allow_outside`.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset directory not found (make one with `python -m bcc.data.synthetic "
                           f"--out {root}` or point data.root at your dataset)")
    images = _image_table(root, allow_outside)
    annotations = load_annotations(root, images)
    _check_labelled(root, images, annotations)
    masks, duplicates = {}, []
    if check_files:
        stamp = DecodeStamp(root)
        masks = find_masks(root, images, _image_sizes(root, images, stamp), stamp, allow_outside)
        duplicates = duplicate_images(root, images, stamp)
        if write_stamp:
            stamp.save()
    return Dataset(root=root, images=images, annotations=annotations, masks=masks, duplicates=duplicates)
