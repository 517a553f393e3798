"""Convert the Derm7pt release (its dermoscopic images) into the bcc dataset contract.

    python -m bcc.data.derm7pt release_v0/ --out data/derm7pt [--copy | --symlink] [--allow-outside]

The release folder holds ``meta/meta.csv`` (a row per case: ``diagnosis``, the 7-point checklist criteria,
``derm`` = the dermoscopic image's path under ``images/``, ``clinic`` = the clinical photograph, unused) and
``images/``. Two criteria map onto bcc's codes, from one rater ``derm7pt``:

- ``PN`` (pigment network): ``pigment_network`` typical or atypical → 1, absent → 0;
- ``AT`` (arborizing telangiectasia): ``vascular_structures`` arborizing → 1, any other value (absent, or
  another vessel: dotted, hairpin, comma, …) → 0.

The other five codes stay blank (unknown): Derm7pt's dots/globules and blue-whitish veil are melanocytic
criteria, not BCC's multiglobules and ovoid nests. ``diagnosis`` is 1 for basal cell carcinoma; ``group``
is ``case_num`` (else the image). The official ``meta/{train,valid,test}_indexes.csv`` (row indexes into
meta.csv), when present, are kept as ``official_split.csv`` (``image_id,split``).

A ``derm`` path whose case differs from the file on disk (the release has ``FCl/Fcl068.jpg`` for
``FCL/Fcl068.jpg``) is resolved when exactly one file matches in any case, with a warning.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path, PurePosixPath

import pandas as pd

from bcc.data import conversion
from bcc.data.errors import DatasetError, warn
from bcc.data.paths import SourceFolders
from bcc.data.schema import Rule, TableSchema, one_of, unique

BCC = "basal cell carcinoma"
DIAGNOSES = (BCC, "blue nevus", "clark nevus", "combined nevus", "congenital nevus", "dermal nevus",
             "dermatofibroma", "lentigo", "melanoma", "melanoma (0.76 to 1.5 mm)", "melanoma (in situ)",
             "melanoma (less than 0.76 mm)", "melanoma (more than 1.5 mm)", "melanoma metastasis", "melanosis",
             "miscellaneous", "recurrent nevus", "reed or spitz nevus", "seborrheic keratosis", "vascular lesion")
PIGMENT_NETWORK = {"absent": "0", "typical": "1", "atypical": "1"}
VASCULAR = {"absent": "0", "arborizing": "1", "comma": "0", "dotted": "0", "hairpin": "0", "linear irregular": "0",
            "within regression": "0", "wreath": "0"}
SPLITS = ("train", "valid", "test")
RATER = "derm7pt"
DOWNLOAD = "the Derm7pt release from derm.cs.sfu.ca"
SEARCH_DEPTH = 4


def find_releases(root: Path, depth: int = SEARCH_DEPTH) -> list[Path]:
    """Release folders under `root`: a ``meta/meta.csv`` whose header has a ``derm`` column."""
    found = []
    for meta in conversion.find_named(root, ["meta.csv"], depth):
        if meta.parent.name.lower() == "meta" and "derm" in _header(meta):
            found.append(meta.parent.parent)
    return found


def _header(path: Path) -> list[str]:
    with open(path, "rb") as f:
        return [c.strip().strip('"').lower() for c in f.readline().decode("utf-8", "replace").split(",")]


def _mapped(meta: pd.DataFrame, column: str, allowed: dict[str, str] | tuple[str, ...], path: Path) -> pd.Series:
    """A criterion's values, lower-cased; a value outside `allowed` is an error naming line and column
    (blank stays blank: not assessed)."""
    TableSchema([one_of(column, ["", *allowed], lambda f: f"{f.path}: line {f.first}, column {f.column}: {f.value!r} "
                                                        f"is not one of: {', '.join(allowed)}; fix the value",
                        transform=lambda s: s.str.lower())]).validate(meta, path)
    values = meta[column].str.lower()
    return values.map(allowed).fillna("") if isinstance(allowed, dict) else values


def _disk_index(images: Path) -> dict[str, list[str]]:
    """Lower-cased path under images/ → the paths on disk spelled so in any case."""
    index: dict[str, list[str]] = {}
    for here, dirs, files in os.walk(images):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            rel = (Path(here) / name).relative_to(images).as_posix()
            index.setdefault(rel.lower(), []).append(rel)
    return index


def _resolve(images: Path, rel: str, where: str, index: dict[str, list[str]], inside: SourceFolders) -> str:
    """The path under images/ of the file `rel` names: as spelled, or the one file matching it in any case."""
    if not rel:
        raise DatasetError(f"{where}: blank derm path; give the dermoscopic image's path under {images}")
    if not (images / rel).is_file():
        matches = index.get(os.path.normpath(rel).replace(os.sep, "/").lower(), [])
        if not matches:
            inside.check(images / rel, where)  # a path leading out is that, before it is a missing file
            raise DatasetError(f"{where}: image {images / rel} not found (not even in another case); fix the derm "
                               f"path or add the file ({DOWNLOAD})")
        if len(matches) > 1:
            raise DatasetError(f"{where}: derm {rel!r} matches {len(matches)} files differing only in case "
                               f"({', '.join(matches)}); fix the path to name one")
        warn(f"{where}: derm {rel!r} is spelled {matches[0]!r} on disk (case differs); using the file "
                        f"on disk")
        rel = matches[0]
    inside.check(images / rel, where)  # an absolute path, a '..' or a symbolic link leading out
    return rel


def _placed(rel: str) -> str:
    """Where an image goes in the new dataset: its place under images/, or — read from outside the release
    (--allow-outside) — ``images/outside/<file name>``, never a path climbing out of the dataset."""
    norm = PurePosixPath(os.path.normpath(rel).replace(os.sep, "/"))
    return f"images/{norm}" if not norm.is_absolute() and norm.parts[0] != ".." else f"images/outside/{norm.name}"


def _row_index(n: int):
    """A check: the values are row indexes of a table of `n` rows (0-based whole numbers)."""
    def passes(s: pd.Series) -> pd.Series:
        rows = pd.to_numeric(s, errors="coerce")
        return rows.notna() & (rows % 1 == 0) & rows.between(0, n - 1)
    return passes


def _official_split(release: Path, meta: pd.DataFrame, image_ids: pd.Series) -> pd.DataFrame | None:
    """``image_id,split`` from meta/{train,valid,test}_indexes.csv (0-based rows of meta.csv), if present."""
    present = [s for s in SPLITS if (release / "meta" / f"{s}_indexes.csv").exists()]
    if not present:
        return None
    parts = []
    for split in present:
        path = release / "meta" / f"{split}_indexes.csv"
        idx = conversion.source_table(path, ("indexes",), f"part of {DOWNLOAD}")
        TableSchema([Rule("a row of meta.csv", _row_index(len(meta)),
                          lambda f: f"{f.path}: line {f.first}: {f.value!r} is not a row index of meta/meta.csv (0 to "
                                    f"{len(meta) - 1}); fix it or remove the split files", "indexes")]).validate(idx, path)
        rows = pd.to_numeric(idx["indexes"])
        parts.append(pd.DataFrame({"image_id": image_ids.iloc[rows.astype(int)].to_numpy(), "split": split,
                                   "line": idx.index, "file": path}))
    split = pd.concat(parts, ignore_index=True)
    twice = split.duplicated("image_id", keep=False)
    if twice.any():
        first = split[twice].iloc[0]
        where = ", ".join(f"{r.file}: line {r.line}" for r in split[twice & split["image_id"].eq(first.image_id)].itertuples())
        raise DatasetError(f"image {first.image_id!r} is in more than one official split ({where}); keep it in one")
    return split[["image_id", "split"]]


def plan(release: Path, allow_outside: bool = False) -> conversion.Plan:
    """The release folder (``meta/meta.csv`` + ``images/``) as a :class:`~bcc.data.conversion.Plan`."""
    release = conversion.folder(release, f"give the Derm7pt release folder (meta/ and images/; {DOWNLOAD})")
    path = release / "meta" / "meta.csv"
    meta = conversion.source_table(path, ("diagnosis", "pigment_network", "vascular_structures", "derm"),
                                   f"the release folder holds meta/meta.csv ({DOWNLOAD})", ("case_num",))
    images = conversion.folder(release / "images", f"the release folder holds images/ ({DOWNLOAD})")
    inside = SourceFolders([release], allow_outside)
    index = _disk_index(images)
    rels = [_resolve(images, rel, f"{path}: line {line}", index, inside) for line, rel in meta["derm"].items()]
    placed = [_placed(r) for r in rels]
    ids = pd.Series([str(PurePosixPath(p).relative_to("images").with_suffix("")).replace("/", "_") for p in placed],
                    index=meta.index)
    TableSchema([unique(["image_id"])]).validate(pd.DataFrame({"image_id": ids}), path)  # two rows naming one image
    diagnosis = _mapped(meta, "diagnosis", DIAGNOSES, path)
    case = meta.get("case_num", ids)
    table = pd.DataFrame({"image_id": ids.to_numpy(), "image": placed, "source": RATER,
                          "group": case.where(case.ne(""), ids).to_numpy(),
                          "diagnosis": diagnosis.map(lambda d: "" if d == "" else str(int(d == BCC))).to_numpy()})
    known = {"PN": _mapped(meta, "pigment_network", PIGMENT_NETWORK, path),
             "AT": _mapped(meta, "vascular_structures", VASCULAR, path)}
    result = conversion.Plan(RATER, table, conversion.annotations(table["image_id"], RATER, known),
                             files={p: images / r for p, r in zip(placed, rels, strict=True)},
                             origin={p: (f"{path}: line {line}", images / r)
                                     for p, r, line in zip(placed, rels, meta.index, strict=True)},
                             notes=[f"read {path} + {images}/"])
    split = _official_split(release, meta, ids)
    if split is not None:
        result.tables["official_split.csv"] = split
        counts = split["split"].value_counts()
        result.notes.append("official split kept as official_split.csv (image_id,split): "
                            + ", ".join(f"{s} {counts.get(s, 0)}" for s in SPLITS))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = conversion.conversion_parser("data.derm7pt", __doc__.splitlines()[0])
    parser.add_argument("release", type=Path, help="the Derm7pt release folder (release_v0/: meta/ and images/)")
    args = parser.parse_args(argv)
    return conversion.run_conversion("data.derm7pt", args, lambda: plan(args.release, args.allow_outside))


if __name__ == "__main__":
    sys.exit(main())
