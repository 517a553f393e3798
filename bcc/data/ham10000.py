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
patterns: unknown, never 0). The images of one lesion must agree on BCC or not (a lesion with a ``bcc`` image
and a ``bkl`` one is refused, naming both lines: one of them is mistyped, or they are two lesions). The
release a table holds is told by its columns (``dx``: HAM10000's metadata; one-hot: an ISIC 2018 ground
truth), not by its file name; a one-hot table is the training set when its lesion groupings are given
(``--groupings``) and the test set when ``--layout isic2018_test`` says so or it bears the official test name. The official photographs are 600 x 450; a copy resized to a square without
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
from bcc.data.contract import ASPECT_RANGE
from bcc.data.errors import DatasetError
from bcc.data.isic import one_hot
from bcc.data.paths import SourceFolders
from bcc.data.schema import Failure, Rule, TableSchema, not_blank, one_of, unique

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
    test: bool = False  # the ISIC 2018 test set: no lesion groupings, each image its own group

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
            layouts.append(Layout(official.source, table, dirs, groupings, [root], official.layout == "isic2018_test"))
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


def layout_from(table: Path, image_dirs: list[Path], groupings: Path | None = None,
                layout: str | None = None) -> Layout:
    """The release named on the command line: a table and its image folder(s). Which release, from the
    table's columns (a copy may be renamed ``…_latest.csv``, a name holding "test" or not): ``dx`` is
    HAM10000's metadata; a one-hot ground truth is the test set when `layout` or its official name says so,
    the training set when its lesion groupings are given or its name is the official training one."""
    table = Path(table)
    dirs, groups = [Path(d) for d in image_dirs], Path(groupings) if groupings else None
    if not table.is_file() or _is_ham(table):
        kind = "ham10000"
    elif layout is not None:
        kind = layout
    elif groups is not None or table.name.lower() == OFFICIAL["isic2018_train"].table.lower():
        kind = "isic2018_train"
    elif table.name.lower() == OFFICIAL["isic2018_test"].table.lower():
        kind = "isic2018_test"
    else:
        raise UsageError(f"{table}: a one-hot ground truth ({', '.join(ONE_HOT)}) of the ISIC 2018 training or test "
                         f"set; say which: --groupings ISIC2018_Task3_Training_LesionGroupings.csv (the training set) "
                         f"or --layout isic2018_test (no lesion groupings: each image its own group)")
    return Layout(OFFICIAL[kind].source, table, dirs, groups, test=kind == "isic2018_test")


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


def _one_diagnosis(f: Failure) -> str:
    """A lesion whose images disagree on BCC: its lines and what each says."""
    lesion = f.table.at[f.first, "group"]
    lines = [n for n in f.lines if f.table.at[n, "group"] == lesion]
    said = ", ".join(f"{f.table.at[n, 'dx']} on line {n}" for n in lines)
    return (f"{f.path}: lesion {lesion!r} has {said}: the images of one lesion share its diagnosis, BCC or not; fix "
            f"the wrong value, or give the images of another lesion their own lesion id")


#: the images of one lesion agree on BCC (a row-level rule over group, diagnosis and the release's own value)
ONE_DIAGNOSIS = Rule("one diagnosis per lesion",
                     lambda t: t.groupby("group")["diagnosis"].transform("nunique").eq(1), _one_diagnosis)


def _read_ham(path: Path) -> pd.DataFrame:
    """image, diagnosis, group from HAM10000_metadata.csv."""
    meta = conversion.source_table(path, ("image_id", "dx"), f"give HAM10000_metadata.csv ({DOWNLOAD})",
                                   ("lesion_id",))
    TableSchema([
        not_blank("image_id", lambda f: f"{f.path}: line {f.first}: blank image_id; give every row its image"),
        unique(["image_id"]),
        one_of("dx", DX, lambda f: f"{f.path}: line {f.first}, column dx: {f.value!r} is not one of {', '.join(DX)}; "
                                   f"fix the value", transform=lambda s: s.str.lower()),
    ]).validate(meta, path)
    dx = meta["dx"].str.lower()
    lesion = meta.get("lesion_id", meta["image_id"])
    rows = pd.DataFrame({"image": meta["image_id"], "diagnosis": dx.eq("bcc").astype(int).astype(str),
                         "group": lesion.where(lesion.ne(""), meta["image_id"]), "dx": dx})
    return TableSchema([ONE_DIAGNOSIS]).validate(rows, path).drop(columns="dx")


def _read_one_hot(path: Path, groupings: Path | None, test: bool) -> pd.DataFrame:
    """image, diagnosis, group from an ISIC 2018 Task 3 ground truth (and its lesion groupings; the test set
    has none)."""
    gt = TableSchema([unique(["image"])]).validate(
        conversion.source_table(path, ("image", *ONE_HOT), f"give the ISIC 2018 Task 3 ground truth ({DOWNLOAD})"), path)
    dx = one_hot(gt, ONE_HOT, path)
    group = gt["image"]
    if groupings is not None:
        groups = conversion.source_table(groupings, ("image", "lesion_id"),
                                         f"give ISIC2018_Task3_Training_LesionGroupings.csv ({DOWNLOAD})")
        TableSchema([unique(["image"])]).validate(groups, groupings)
        lesion = groups.set_index("image")["lesion_id"].reindex(gt["image"]).fillna("").to_numpy()
        group = pd.Series(np.where(lesion == "", gt["image"], lesion), index=gt.index)  # none: its own group
    elif not test:
        raise DatasetError(f"{path}: the training set has several images of one lesion; give its lesion groupings "
                           f"(--groupings ISIC2018_Task3_Training_LesionGroupings.csv) so they stay in one fold")
    rows = pd.DataFrame({"image": gt["image"], "diagnosis": dx.eq("BCC").astype(int).astype(str), "group": group,
                         "dx": dx})
    return TableSchema([ONE_DIAGNOSIS]).validate(rows, path).drop(columns="dx")


def plan(layout: Layout, aspect: str = "auto", allow_outside: bool = False) -> conversion.Plan:
    """The release as a :class:`~bcc.data.conversion.Plan`; every image listed must be in the image folders."""
    aspect = parse_aspect(aspect)
    table = Path(layout.table)
    if not table.is_file():
        raise DatasetError(f"{table}: {'not a file' if table.exists() else 'file not found'}; give "
                           f"HAM10000_metadata.csv or an ISIC 2018 Task 3 ground truth ({DOWNLOAD})")
    rows = _read_ham(table) if _is_ham(table) else _read_one_hot(table, layout.groupings, layout.test)
    if not layout.image_dirs:
        names = [n for o in OFFICIAL.values() for n in o.images]
        raise DatasetError(f"{table}: no image folder ({', '.join(names)}) beside it or one folder up; give the "
                           f"table and its image folder(s) explicitly")
    fix = "give every image folder of the release (HAM10000 has two: HAM10000_images_part_1 and _part_2)"
    dirs = [conversion.folder(d, fix) for d in layout.image_dirs]
    inside = SourceFolders(layout.roots or dirs, allow_outside)
    files = conversion.image_files(dirs, SUFFIXES)
    searched = ", ".join(str(d) for d in dirs)
    sources, wheres = [], []
    for line, name in tqdm(rows["image"].items(), total=len(rows), desc=f"{layout.source}: finding images",
                           unit="image", disable=None):
        where = f"{table}: line {line}"
        sources.append(inside.check(conversion.find_image(files, name, where, searched, SUFFIXES, fix), where))
        wheres.append(where)
    images = pd.DataFrame({"image_id": rows["image"].to_numpy(), "image": [f"images/{p.name}" for p in sources],
                           "source": layout.source, "group": rows["group"].to_numpy(),
                           "diagnosis": rows["diagnosis"].to_numpy()})
    notes = [f"read {layout.describe()}"]
    if aspect == "auto":
        square = [w == h for w, h in (conversion.upright_size(p, where) for p, where in zip(sources, wheres, strict=True))]
        images["aspect"] = np.where(square, SQUEEZED, "")
        if any(square):
            notes.append(f"aspect {SQUEEZED} (4:3) on the {sum(square)} square image files: the official photographs "
                         f"are 600 x 450, so a square file is a squeezed copy (--aspect none leaves it blank)")
    elif aspect != "none":
        images["aspect"] = aspect
    return conversion.Plan(layout.source, images, conversion.annotations(images["image_id"], layout.source),
                           files=dict(zip(images["image"], sources, strict=True)), notes=notes,
                           origin={rel: (where, src) for rel, where, src in zip(images["image"], wheres, sources,
                                                                                strict=True)})


def main(argv: list[str] | None = None) -> int:
    parser = conversion.conversion_parser("data.ham10000", __doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path,
                        help="the folder holding the release; or its table (HAM10000_metadata.csv, "
                             "ISIC2018_Task3_*_GroundTruth.csv) followed by its image folder(s)")
    parser.add_argument("--layout", choices=list(OFFICIAL),
                        help="which release, where the folder holds several (or a one-hot table is the test set's)")
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
            layout = layout_from(args.paths[0], args.paths[1:], args.groupings, args.layout)
        else:
            raise UsageError(f"{args.paths[0]}: give the folder holding the release, or its table followed by its "
                             f"image folder(s)")
        return plan(layout, args.aspect, args.allow_outside)

    return conversion.run_conversion("data.ham10000", args, make)


if __name__ == "__main__":
    sys.exit(main())
