"""Convert HAM10000 and ISIC 2018 Task 3, in their official layouts, into the bcc dataset contract.

Three releases of one kind of data (a biopsy-grade or consensus diagnosis per image, no pattern labels):

- HAM10000 (Harvard Dataverse): ``HAM10000_metadata.csv`` (``lesion_id,image_id,dx,dx_type,age,sex,
  localization``) and ``HAM10000_images_part_1/``, ``HAM10000_images_part_2/`` (a resized copy often has
  one ``HAM10000_images/``);
- ISIC 2018 Task 3 training (the same 10,015 images): ``ISIC2018_Task3_Training_GroundTruth.csv``
  (``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`` one-hot), ``ISIC2018_Task3_Training_LesionGroupings.csv``
  (``image,lesion_id,diagnosis_confirm_type``) and ``ISIC2018_Task3_Training_Input/``;
- ISIC 2018 Task 3 test: ``ISIC2018_Task3_Test_GroundTruth.csv`` (one-hot) and ``ISIC2018_Task3_Test_Input/``;
  no lesion groupings, so each image is its own group.

    python -m bcc.data.ham10000 FOLDER --out data/ham10000 [--layout ham10000|isic2018_train|isic2018_test]
    python -m bcc.data.ham10000 HAM10000_metadata.csv HAM10000_images_part_1 HAM10000_images_part_2 --out ...
    python -m bcc.data.ham10000 ISIC2018_Task3_Training_GroundTruth.csv ISIC2018_Task3_Training_Input \\
        --groupings ISIC2018_Task3_Training_LesionGroupings.csv --out ...
    [--aspect auto|none|W:H] [--copy | --symlink] [--allow-outside]

``diagnosis`` is 1 for BCC (``dx == bcc``, or the ``BCC`` column), 0 otherwise; ``group`` is the lesion id;
one annotation row per image from a rater named after the source, every code blank (nobody rated the
patterns: unknown, never 0). The official photographs are 600 x 450; a copy resized to a square without
keeping the ratio gets ``aspect`` 1.3333 (``--aspect auto``, read from each file's header without decoding
it), so `data.resize=crop` can undo the squeeze.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from bcc.core.errors import UsageError
from bcc.data import conversion
from bcc.data.contract import ASPECT_RANGE, DatasetError, check_unique
from bcc.data.isic import one_hot

DX = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
ONE_HOT = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
SUFFIXES = (".jpg", ".jpeg", ".png")  # matched in any case (.JPG too)
SQUEEZED = "1.3333"  # 4:3, the official 600 x 450, on a file resized to a square
SEARCH_DEPTH = 3
DOWNLOAD = ("HAM10000: doi:10.7910/DVN/DBW86T; ISIC 2018 Task 3: challenge.isic-archive.com")


@dataclass(frozen=True)
class Official:
    """An official release: its table, its image folders' names, its lesion groupings (if any)."""

    layout: str
    source: str
    table: str
    images: tuple[str, ...]
    groupings: str | None = None


OFFICIAL = {o.layout: o for o in (
    Official("ham10000", "ham10000", "HAM10000_metadata.csv",
             ("HAM10000_images_part_1", "HAM10000_images_part_2", "HAM10000_images")),
    Official("isic2018_train", "ham10000", "ISIC2018_Task3_Training_GroundTruth.csv",
             ("ISIC2018_Task3_Training_Input",), "ISIC2018_Task3_Training_LesionGroupings.csv"),
    Official("isic2018_test", "isic2018_test", "ISIC2018_Task3_Test_GroundTruth.csv", ("ISIC2018_Task3_Test_Input",)),
)}


@dataclass
class Layout:
    """A release to convert: its table, image folders and groupings, and the folders reading is confined to."""

    source: str
    table: Path
    image_dirs: list[Path]
    groupings: Path | None = None
    roots: list[Path] | None = None  # default: the image folders

    def describe(self) -> str:
        names = ", ".join(f"{d.name}/" for d in self.image_dirs)
        return f"{self.table}" + (f" + {self.groupings.name}" if self.groupings else "") + f" + {names}"


def _official_dirs(found: list[Path], official: Official) -> list[Path]:
    """Folders found in any case, the official spelling kept where a copy holds both (Kaggle's HAM10000
    has ``HAM10000_images_part_1/`` and a duplicate ``ham10000_images_part_1/``)."""
    keep = []
    for name in official.images:
        same = [d for d in found if d.name.lower() == name.lower()]
        exact = [d for d in same if d.name == name]
        keep += exact or same
    return keep


def find_layouts(root: Path, depth: int = SEARCH_DEPTH) -> list[Layout]:
    """Every official release under `root` (its table at most `depth` levels down; its image folders and
    groupings beside the table or one folder up, as the official archives unpack)."""
    root = Path(root)
    layouts = []
    for official in OFFICIAL.values():
        for table in conversion.find_named(root, [official.table], depth):
            bases = [table.parent] + ([table.parent.parent] if table.parent != root else [])
            dirs: list[Path] = []
            groupings = None
            for base in bases:
                dirs = dirs or _official_dirs(conversion.find_named(base, official.images, 2, dirs=True), official)
                if official.groupings and groupings is None:
                    groupings = next(iter(conversion.find_named(base, [official.groupings], 2)), None)
            layouts.append(Layout(official.source, table, dirs, groupings, [root]))
    return layouts


def _layout_name(layout: Layout) -> str:
    return next(o.layout for o in OFFICIAL.values() if o.table.lower() == layout.table.name.lower())


def choose_layout(root: Path, layout: str | None = None) -> Layout:
    """The one release under the folder `root` (of kind `layout` if given)."""
    found = [f for f in find_layouts(conversion.folder(root, "give the folder holding the release"))
             if layout is None or _layout_name(f) == layout]
    wanted = [OFFICIAL[layout].table] if layout else [o.table for o in OFFICIAL.values()]
    if not found:
        raise DatasetError(f"{root}: no {' or '.join(wanted)} found (searched {SEARCH_DEPTH} levels down); point at "
                           f"the folder holding the release, or give the table and the image folders ({DOWNLOAD})")
    if len(found) > 1:
        raise DatasetError(f"{root}: holds {len(found)} releases ({'; '.join(_layout_name(f) + ': ' + str(f.table) for f in found)});"
                           f" choose one with --layout, or give its table and image folders")
    return found[0]


def layout_from(table: Path, image_dirs: list[Path], groupings: Path | None = None) -> Layout:
    """The release named on the command line: a table and its image folder(s)."""
    test = "test" in Path(table).name.lower()
    return Layout("isic2018_test" if test else "ham10000", Path(table), [Path(d) for d in image_dirs],
                  Path(groupings) if groupings else None)


def parse_aspect(value: str) -> str:
    """``auto`` | ``none`` | a forced ``W:H`` (as the contract's number, e.g. ``4:3`` → ``1.3333``)."""
    if value in ("auto", "none"):
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*", value)
    low, high = ASPECT_RANGE
    if not m or float(m[2]) == 0 or not low <= float(m[1]) / float(m[2]) <= high:
        raise UsageError(f"--aspect {value!r}: give auto, none or W:H with W/H in [{low:g}, {high:g}] (e.g. 4:3)")
    return f"{float(Fraction(m[1]) / Fraction(m[2])):.4f}"


def _is_ham(table: Path) -> bool:
    """HAM10000's metadata (``dx``) rather than a one-hot ISIC ground truth, from the header line."""
    with open(table, "rb") as f:
        head = f.readline().decode("utf-8", "replace").lower()
    return re.search(r"(^|[,\s\"])(dx|image_id)([,\s\"]|$)", head) is not None


def _read_ham(path: Path) -> pd.DataFrame:
    """image, diagnosis, group from HAM10000_metadata.csv."""
    meta = conversion.source_table(path, ("image_id", "dx"), f"give HAM10000_metadata.csv ({DOWNLOAD})",
                                   ("lesion_id",))
    blank = meta["image_id"].eq("")
    if blank.any():
        raise DatasetError(f"{path}: line {blank.index[blank.to_numpy()][0]}: blank image_id; give every row its image")
    check_unique(meta, ["image_id"], path)
    dx = meta["dx"].str.lower()
    bad = ~dx.isin(DX)
    if bad.any():
        raise DatasetError(f"{path}: line {bad.index[bad.to_numpy()][0]}, column dx: {meta.loc[bad, 'dx'].iloc[0]!r} is "
                           f"not one of {', '.join(DX)}; fix the value")
    lesion = meta.get("lesion_id", meta["image_id"])
    return pd.DataFrame({"image": meta["image_id"], "diagnosis": dx.eq("bcc").astype(int).astype(str),
                         "group": lesion.where(lesion.ne(""), meta["image_id"])})


def _read_one_hot(path: Path, groupings: Path | None) -> pd.DataFrame:
    """image, diagnosis, group from an ISIC 2018 Task 3 ground truth (and its lesion groupings)."""
    gt = conversion.source_table(path, ("image", *ONE_HOT), f"give the ISIC 2018 Task 3 ground truth ({DOWNLOAD})")
    check_unique(gt, ["image"], path)
    diagnosis = one_hot(gt, ONE_HOT, path).eq("BCC").astype(int).astype(str)
    group = gt["image"]
    if groupings is not None:
        groups = conversion.source_table(groupings, ("image", "lesion_id"),
                                         f"give ISIC2018_Task3_Training_LesionGroupings.csv ({DOWNLOAD})")
        check_unique(groups, ["image"], groupings)
        lesion = groups.set_index("image")["lesion_id"].reindex(gt["image"]).fillna("").to_numpy()
        group = pd.Series(np.where(lesion == "", gt["image"], lesion), index=gt.index)  # none: its own group
    elif "test" not in path.name.lower():
        raise DatasetError(f"{path}: the training set has several images of one lesion; give its lesion groupings "
                           f"(--groupings ISIC2018_Task3_Training_LesionGroupings.csv) so they stay in one fold")
    return pd.DataFrame({"image": gt["image"], "diagnosis": diagnosis, "group": group})


def plan(layout: Layout, aspect: str = "auto", allow_outside: bool = False) -> conversion.Plan:
    """The release as a :class:`~bcc.data.conversion.Plan`; every image listed must be in the image folders."""
    aspect = parse_aspect(aspect)
    table = Path(layout.table)
    if not table.is_file():
        raise DatasetError(f"{table}: {'not a file' if table.exists() else 'file not found'}; give "
                           f"HAM10000_metadata.csv or an ISIC 2018 Task 3 ground truth ({DOWNLOAD})")
    rows = _read_ham(table) if _is_ham(table) else _read_one_hot(table, layout.groupings)
    if not layout.image_dirs:
        names = [n for o in OFFICIAL.values() for n in o.images]
        raise DatasetError(f"{table}: no image folder ({', '.join(names)}) beside it or one folder up; give the "
                           f"table and its image folder(s) explicitly")
    fix = "give every image folder of the release (HAM10000 has two: HAM10000_images_part_1 and _part_2)"
    dirs = [conversion.folder(d, fix) for d in layout.image_dirs]
    inside = conversion.SourceFolders(layout.roots or dirs, allow_outside)
    files = conversion.image_files(dirs, SUFFIXES)
    searched = ", ".join(str(d) for d in dirs)
    sources = []
    for line, name in tqdm(rows["image"].items(), total=len(rows), desc=f"{layout.source}: finding images",
                           unit="image", disable=None):
        where = f"{table}: line {line}"
        sources.append(inside.check(conversion.find_image(files, name, where, searched, SUFFIXES, fix), where))
    images = pd.DataFrame({"image_id": rows["image"].to_numpy(), "image": [f"images/{p.name}" for p in sources],
                           "source": layout.source, "group": rows["group"].to_numpy(),
                           "diagnosis": rows["diagnosis"].to_numpy()})
    notes = [f"read {layout.describe()}"]
    if aspect == "auto":
        square = [w == h for w, h in (conversion.upright_size(p) for p in sources)]
        images["aspect"] = np.where(square, SQUEEZED, "")
        if any(square):
            notes.append(f"aspect {SQUEEZED} (4:3) on the {sum(square)} square image files: the official photographs "
                         f"are 600 x 450, so a square file is a squeezed copy (--aspect none leaves it blank)")
    elif aspect != "none":
        images["aspect"] = aspect
    return conversion.Plan(layout.source, images, conversion.annotations(images["image_id"], layout.source),
                           files=dict(zip(images["image"], sources, strict=True)), notes=notes)


def main(argv: list[str] | None = None) -> int:
    parser = conversion.conversion_parser("data.ham10000", __doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path,
                        help="the folder holding the release; or its table (HAM10000_metadata.csv, "
                             "ISIC2018_Task3_*_GroundTruth.csv) followed by its image folder(s)")
    parser.add_argument("--layout", choices=list(OFFICIAL), help="which release, where the folder holds several")
    parser.add_argument("--groupings", type=Path, help="ISIC2018_Task3_Training_LesionGroupings.csv (lesion → group)")
    parser.add_argument("--aspect", default="auto",
                        help="auto: 1.3333 (4:3) on square files, the official 600 x 450 squeezed; none: blank; "
                             "W:H: that for every image")
    args = parser.parse_args(argv)

    def make() -> conversion.Plan:
        parse_aspect(args.aspect)  # a usage error before the release is read
        if len(args.paths) == 1 and args.paths[0].is_dir():
            layout = choose_layout(args.paths[0], args.layout)
            if args.groupings:
                layout.groupings = args.groupings
        elif len(args.paths) >= 2:
            layout = layout_from(args.paths[0], args.paths[1:], args.groupings)
        else:
            raise UsageError(f"{args.paths[0]}: give the folder holding the release, or its table followed by its "
                             f"image folder(s)")
        return plan(layout, args.aspect, args.allow_outside)

    return conversion.run_conversion("data.ham10000", args, make)


if __name__ == "__main__":
    sys.exit(main())
