"""Convert the PH2 database, in its official layout, into the bcc dataset contract.

    python -m bcc.data.ph2 PH2Dataset/ --out data/ph2 [--table PH2_dataset.txt] [--copy | --symlink] [--allow-outside]

``PH2Dataset/`` holds the criteria table — ``PH2_dataset.xlsx`` and ``PH2_dataset.txt``, the same table
(the xlsx is read when present, else the txt; ``--table`` picks) — and
``PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp`` with the lesion segmentation
``IMDxxx_lesion/IMDxxx_lesion.bmp``. The lesion masks become the contract's ``masks/<id>_lesion.png``
(0/255; a BMP converted to PNG, a PNG placed as it is); a mask whose size is not its image's is refused. A
mask that marks nothing (all 0) or the whole picture (all 255) says nothing about where the lesion is: its
case is converted without it, with a warning, so it never enters the lesion statistics (Grad-CAM's mass on
the lesion, `bcc.evaluation.lesion_focus`).

PH2 holds 80 common nevi, 80 atypical nevi and 40 melanomas: ``diagnosis`` is 0 for every image (no BCC).
Its pigment network (``T`` typical, ``AT`` atypical — not bcc's ``AT`` code —, ``A`` absent) gives ``PN``
(T or AT → 1, A → 0), from one rater ``ph2``; every other code stays blank (unknown).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from bcc.core.errors import UsageError
from bcc.data import conversion
from bcc.data.errors import DatasetError, warn
from bcc.data.paths import SourceFolders
from bcc.data.schema import Rule, TableSchema, one_of, unique

TABLES = ("PH2_dataset.xlsx", "PH2_dataset.txt")
IMAGES = "PH2 Dataset images"
CLINICAL = ("common nevus", "atypical nevus", "melanoma")  # the txt's codes 0, 1, 2
PIGMENT_NETWORK = {"T": "1", "AT": "1", "A": "0"}
SUFFIXES = (".bmp", ".jpg", ".jpeg", ".png")  # the official release is BMP; copies re-encode it
MASK_SUFFIXES = (".bmp", ".png")
NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")  # an id names files: <id>_lesion.png
RATER = "ph2"
DOWNLOAD = "the PH2 database from www.fc.up.pt/addi/ph2%20database.html"
SEARCH_DEPTH = 4


def find_tables(root: Path, depth: int = SEARCH_DEPTH) -> list[Path]:
    """The criteria table of every PH2 folder under `root` (the xlsx where a folder has both)."""
    found: dict[Path, Path] = {}
    for table in conversion.find_named(root, TABLES, depth):
        if table.parent not in found or table.suffix.lower() == ".xlsx":
            found[table.parent] = table
    return sorted(found.values())


def _column(name: object) -> str:
    """A header cell as a key: its first line (the xlsx adds the allowed values below), lower-cased."""
    return str(name).split("\n")[0].strip().lower() if isinstance(name, str) else ""


def _one_x(cells: pd.DataFrame) -> pd.Series:
    """One X among the clinical-diagnosis columns of the xlsx (the txt has one code column instead)."""
    return cells[list(CLINICAL)].ne("").sum(axis=1).eq(1) if set(CLINICAL) <= set(cells.columns) else \
        pd.Series(True, index=cells.index)


#: the criteria table's values (txt: the clinical diagnosis as a code; xlsx: an X in one of three columns)
CRITERIA = [
    one_of("clinical diagnosis", ["0", "1", "2"],
           lambda f: f"{f.path}: {f.unit} {f.first}, column Clinical Diagnosis: {f.value!r} is not 0, 1 or 2 (common "
                     f"nevus, atypical nevus, melanoma)"),
    Rule("one X", _one_x,
         lambda f: f"{f.path}: {f.unit} {f.first}: expected one X among the Clinical Diagnosis columns (Common Nevus, "
                   f"Atypical Nevus, Melanoma), got {int(f.value[list(CLINICAL)].ne('').sum())}"),
    one_of("pigment network", PIGMENT_NETWORK, transform=lambda s: s.str.upper(),
           says=lambda f: f"{f.path}: {f.unit} {f.first}, column Pigment Network: {f.value!r} is not one of T (typical), "
                          f"AT (atypical), A (absent); fix the value"),
]
NAMES = [
    Rule("PH2 name", lambda n: bool(NAME.fullmatch(n)),
         lambda f: f"{f.path}: {f.unit} {f.first}: image name {f.value!r} is not a PH2 name (IMDxxx); fix it",
         "image_id", element_wise=True),
    unique(["image_id"], lambda f: f"{f.path}: image {f.value['image_id']!r} on {f.unit}s "
                                   f"{', '.join(str(n) for n in f.lines if f.table.at[n, 'image_id'] == f.value['image_id'])};"
                                   f" keep one {f.unit} each"),
]


def _rows(cells: pd.DataFrame, header: list[str], path: Path, unit: str, header_at: int) -> pd.DataFrame:
    """image_id, clinical, pigment_network from the table's cells (indexed by `unit`: Excel's row or the
    txt's line) under `header` (at `header_at`)."""
    if "image name" in header:
        header = ["name" if c == "image name" else c for c in header]
    needed = ["name", "pigment network", *CLINICAL] if "common nevus" in header else [
        "name", "pigment network", "clinical diagnosis"]
    missing = [c for c in needed if c not in header]
    if missing:
        raise DatasetError(f"{path}: {unit} {header_at}: missing column(s) {missing} in the header "
                           f"{[c for c in header if c]}; this is not PH2's criteria table ({DOWNLOAD})")
    cells = cells.set_axis(header, axis=1)
    cells = cells.loc[:, ~cells.columns.duplicated()]
    TableSchema(CRITERIA).validate(cells, path, unit)
    if "clinical diagnosis" in cells:
        clinical = cells["clinical diagnosis"].map(lambda c: CLINICAL[int(c)])
    else:
        clinical = cells[list(CLINICAL)].ne("").idxmax(axis=1)
    network = cells["pigment network"].str.upper()
    return pd.DataFrame({"image_id": cells["name"], "clinical": clinical, "pigment_network": network}).rename_axis(unit)


def read_xlsx(path: Path) -> pd.DataFrame:
    """The xlsx: a legend above, the header row (``Image Name``, …; the clinical diagnosis and the colours
    marked ``X`` in a column each), a row per image; rows are numbered as in Excel."""
    try:
        sheet = pd.read_excel(path, header=None, dtype=str, engine="openpyxl").fillna("")
    except Exception as e:  # noqa: BLE001 — openpyxl's many errors on a file that is not a workbook
        raise DatasetError(f"{path}: cannot be read as an Excel workbook ({type(e).__name__}: {e}); re-extract it "
                           f"from {DOWNLOAD}, or pass --table PH2_dataset.txt") from None
    sheet = sheet.apply(lambda col: col.str.strip())
    sheet.index = pd.RangeIndex(1, len(sheet) + 1, name="row")
    names = sheet.map(_column)
    found = names.index[names.eq("image name").any(axis=1).to_numpy()]
    if not len(found):
        raise DatasetError(f"{path}: no header row with an 'Image Name' cell; this is not PH2's criteria table "
                           f"({DOWNLOAD})")
    header_row = found[0]
    body = sheet.loc[header_row + 1:]
    return _rows(body[body.ne("").any(axis=1)], names.loc[header_row].tolist(), path, "row", header_row)


def _cells(line: str) -> list[str]:
    """A row of the txt: cells between ``||`` (and ``|`` inside the ABCD group), stripped."""
    return [c.strip() for c in re.split(r"\|\|?", line.strip())[1:-1]]


def read_txt(path: Path) -> pd.DataFrame:
    """The txt: a pipe-separated text dump — ``|| Name || Histological Diagnosis || Clinical Diagnosis ||
    Asymmetry | Pigment Network | … || Colors ||``, clinical diagnosis 0/1/2 — followed by a legend."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    rows: list[tuple[int, list[str]]] = []
    header, header_line = None, 0
    for number, line in enumerate(lines, 1):
        if not line.lstrip().startswith("|"):
            if header is not None and rows and line.strip():
                break  # the legend after the table
            continue
        cells = _cells(line)
        if header is None:
            header, header_line = [c.lower() for c in cells], number
            continue
        if len(cells) != len(header):
            raise DatasetError(f"{path}: line {number}: {len(cells)} cells, but the header (line {header_line}) has "
                               f"{len(header)}; each row keeps its || and | separators, an empty cell too")
        rows.append((number, cells))
    if header is None or not rows:
        raise DatasetError(f"{path}: no '|| Name || …' table in it; this is not PH2's criteria table ({DOWNLOAD})")
    cells = pd.DataFrame([c for _, c in rows], index=[n for n, _ in rows])
    return _rows(cells, header, path, "line", header_line)


def read_table(path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: {'not a file' if path.exists() else 'file not found'}; the PH2 folder holds "
                           f"{' or '.join(TABLES)} ({DOWNLOAD})")
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        return read_xlsx(path)
    return read_txt(path)


def _bmp_to_png(src: Path):
    """A writer of the PNG form of the mask `src`: 0 outside, 255 inside (any non-zero pixel)."""
    def make(dst: Path) -> None:
        with Image.open(src) as im:
            Image.fromarray(np.where(np.asarray(im.convert("L")) > 0, 255, 0).astype(np.uint8)).save(dst, "PNG")
    return make


def _marks(mask: Path) -> str | None:
    """Why the lesion mask `mask` marks no lesion (every pixel 0, or every pixel set), or None when it marks one."""
    try:
        with Image.open(mask) as im:
            marked = np.asarray(im.convert("L")) > 0
    except (OSError, SyntaxError, ValueError) as e:  # what Pillow raises on a file it cannot read
        raise DatasetError(f"{mask}: cannot read the lesion mask ({e}); re-extract the case from {DOWNLOAD}") from None
    if not marked.any():
        return "all 0: nothing marked"
    return "every pixel marked: the whole picture" if marked.all() else None


def plan(table: Path, allow_outside: bool = False, root: Path | None = None) -> conversion.Plan:
    """The PH2 folder `root` (default: `table`'s) read with its criteria `table`, as a
    :class:`~bcc.data.conversion.Plan`."""
    table = Path(table)
    rows = read_table(table)
    unit = str(rows.index.name)
    TableSchema(NAMES).validate(rows, table, unit)
    root = Path(root) if root is not None else table.parent
    cases = conversion.folder(next(iter(conversion.find_named(root, [IMAGES], 2, dirs=True)), root / IMAGES),
                              f"the PH2 folder holds '{IMAGES}/' beside {table.name} ({DOWNLOAD})")
    inside = SourceFolders([root], allow_outside)
    files, made, origin, sources, missing, blank = {}, {}, {}, [], [], []
    for number, name in rows["image_id"].items():
        where = f"{table}: {unit} {number}"
        fix = f"every PH2 case has {IMAGES}/{name}/{name}_Dermoscopic_Image/{name}.bmp ({DOWNLOAD})"
        image_dir = cases / name / f"{name}_Dermoscopic_Image"
        found = conversion.image_files([image_dir], SUFFIXES) if image_dir.is_dir() else {}
        image = inside.check(conversion.find_image(found, name, where, str(image_dir), SUFFIXES, fix), where)
        files[f"images/{image.name}"] = image
        origin[f"images/{image.name}"] = (where, image)
        sources.append(f"images/{image.name}")
        mask_dir = cases / name / f"{name}_lesion"
        masks = conversion.image_files([mask_dir], MASK_SUFFIXES).get(f"{name}_lesion", []) if mask_dir.is_dir() else []
        if not masks:
            missing.append(name)
            continue
        if len(masks) > 1:
            raise DatasetError(f"{where}: {len(masks)} lesion masks in {mask_dir} ({', '.join(m.name for m in masks)}); "
                               f"keep one")
        mask = inside.check(masks[0], where)
        (mw, mh), (iw, ih) = conversion.upright_size(mask, where), conversion.upright_size(image, where)
        if (mw, mh) != (iw, ih):
            raise DatasetError(f"{mask}: lesion mask is {mw}x{mh} but its image {image.name} is {iw}x{ih}; a mask must "
                               f"have its image's size (re-extract the case from {DOWNLOAD})")
        if (marks := _marks(mask)) is not None:
            blank.append(f"{name} ({marks})")
            continue
        origin[f"masks/{name}_lesion.png"] = (where, mask)
        if mask.suffix.lower() == ".png":
            files[f"masks/{name}_lesion.png"] = mask
        else:
            made[f"masks/{name}_lesion.png"] = _bmp_to_png(mask)
    images = pd.DataFrame({"image_id": rows["image_id"].to_numpy(), "image": sources, "source": RATER,
                           "group": rows["image_id"].to_numpy(), "diagnosis": "0"})
    known = {"PN": rows["pigment_network"].map(PIGMENT_NETWORK)}
    counts = rows["clinical"].value_counts()
    notes = [f"read {table} + {cases.name}/: " + ", ".join(f"{c} {counts.get(c, 0)}" for c in CLINICAL)
             + " (diagnosis 0: PH2 has no BCC)"]
    if missing:
        warn(f"{len(missing)} case(s) without a lesion mask ({', '.join(missing[:5])}"
             f"{', …' if len(missing) > 5 else ''}): converted without one")
    if blank:
        warn(f"{len(blank)} lesion mask(s) mark no lesion ({', '.join(blank[:5])}{', …' if len(blank) > 5 else ''}): "
             f"their cases are converted without one, kept out of the lesion statistics (re-extract them from "
             f"{DOWNLOAD})")
    return conversion.Plan(RATER, images, conversion.annotations(images["image_id"], RATER, known),
                           files=files, made=made, origin=origin, notes=notes)


def choose_table(root: Path, table: Path | None = None) -> Path:
    """The criteria table: `table` if given, else the one of the PH2 folder `root` (or below it)."""
    if table is not None:
        return table
    found = find_tables(conversion.folder(root, f"give the PH2Dataset folder ({DOWNLOAD})"))
    if not found:
        raise DatasetError(f"{root}: no {' or '.join(TABLES)} found (searched {SEARCH_DEPTH} levels down); point at "
                           f"the PH2Dataset folder ({DOWNLOAD})")
    if len(found) > 1:
        raise UsageError(f"{root}: holds {len(found)} PH2 tables ({', '.join(map(str, found))}); point at one folder "
                         f"or pass --table")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    parser = conversion.conversion_parser("data.ph2", __doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the PH2Dataset folder (PH2_dataset.xlsx/.txt, 'PH2 Dataset images/')")
    parser.add_argument("--table", type=Path, help="the criteria table to read (default: the xlsx, else the txt)")
    args = parser.parse_args(argv)
    return conversion.run_conversion("data.ph2", args, lambda: plan(
        choose_table(args.folder, args.table), args.allow_outside, args.folder if args.table else None))


if __name__ == "__main__":
    sys.exit(main())
