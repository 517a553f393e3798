"""Bad inputs of the public-dataset adapters (see tests/bad_inputs/__init__.py): a HAM10000 / ISIC 2018,
Derm7pt or PH2 download that is incomplete or holds values the adapter cannot map, refused with exit 2
and a message naming the file, the line (or Excel row) and the fix, with nothing written.

Each row builds a tiny official-layout copy (tests/helpers/public_sets.py) under the workspace, spoils it,
and runs the command with ``--out <workspace>/out``.
"""
from __future__ import annotations

import re
import shutil
from collections.abc import Callable

import numpy as np
import openpyxl
import pandas as pd
from PIL import Image

from tests.bad_inputs.case import Case, Workspace
from tests.helpers import public_sets

HAM, DERM, PH2, PUBLIC = ("bcc.data.ham10000:main", "bcc.data.derm7pt:main", "bcc.data.ph2:main",
                          "bcc.data.public:main")
Prepare = Callable[[Workspace], None]
OUTSIDE = r"resolves to .*elsewhere.*, outside the folder\(s\) given .*pass --allow-outside"


def steps(*prepares: Prepare) -> Prepare:
    def prepare(ws: Workspace) -> None:
        for p in prepares:
            p(ws)
    return prepare


def on(folder: str, *extra: str) -> Callable[[Workspace], list[str]]:
    """The command on a folder of the workspace, writing <workspace>/out."""
    return lambda ws: [str(ws.root / folder), "--out", str(ws.root / "out"), *extra]


def ham(ws: Workspace) -> None:
    public_sets.ham10000(ws.root / "ham")


def isic2018(ws: Workspace) -> None:
    public_sets.isic2018_training(ws.root / "isic")


def derm(ws: Workspace) -> None:
    public_sets.derm7pt(ws.root / "derm7pt")


def ph2(ws: Workspace) -> None:
    public_sets.ph2(ws.root / "ph2")


def table(rel: str, edit: Callable[[pd.DataFrame], object]) -> Prepare:
    """Edit a CSV of the workspace as strings (row 0 is line 2)."""
    def prepare(ws: Workspace) -> None:
        path = ws.root / rel
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        edit(df)
        df.to_csv(path, index=False)
    return prepare


def set_cell(rel: str, row: int, column: str, value: str) -> Prepare:
    """Set one value of a CSV (row 0 is line 2)."""
    def edit(df: pd.DataFrame) -> None:
        df.loc[row, column] = value
    return table(rel, edit)


def unlink(rel: str) -> Prepare:
    return lambda ws: (ws.root / rel).unlink()


def text(rel: str, edit: Callable[[str], str]) -> Prepare:
    def prepare(ws: Workspace) -> None:
        path = ws.root / rel
        path.write_text(edit(path.read_text()))
    return prepare


def outside_link(rel: str) -> Prepare:
    """Replace a release's file by a symbolic link to a picture outside every folder given."""
    def prepare(ws: Workspace) -> None:
        target = public_sets.picture(ws.root / "elsewhere" / "x.jpg", (32, 24), 7)
        (ws.root / rel).unlink()
        (ws.root / rel).symlink_to(target)
    return prepare


def existing_out(ws: Workspace) -> None:
    (ws.root / "out").mkdir()
    (ws.root / "out" / "precious.txt").write_text("not a dataset, and not to be deleted")


def xlsx_cell(cell: str, value: str) -> Prepare:
    def prepare(ws: Workspace) -> None:
        path = ws.root / "ph2/PH2Dataset/PH2_dataset.xlsx"
        wb = openpyxl.load_workbook(path)
        wb.active[cell] = value
        wb.save(path)
    return prepare


def txt_line(number: int, edit: Callable[[str], str]) -> Prepare:
    def change(t: str) -> str:
        lines = t.split("\n")
        lines[number - 1] = edit(lines[number - 1])
        return "\n".join(lines)
    return text("ph2/PH2Dataset/PH2_dataset.txt", change)


def txt_cell(number: int, column: int, value: str) -> Prepare:
    """Set the `column`-th cell (0 = Name) of line `number` of PH2_dataset.txt, keeping its separators."""
    def edit(line: str) -> str:
        parts = re.split(r"(\|\|?)", line)
        cells = [i for i in range(len(parts)) if i % 2 == 0][1:-1]
        parts[cells[column]] = f" {value} "
        return "".join(parts)
    return txt_line(number, edit)


def flat_mask(value: int) -> Prepare:
    """IMD016's lesion mask marking nothing (0) or the whole picture (255)."""
    def prepare(ws: Workspace) -> None:
        mask = ws.root / "ph2/PH2Dataset/PH2 Dataset images/IMD016/IMD016_lesion/IMD016_lesion.bmp"
        Image.fromarray(np.full((18, 24), value, np.uint8)).save(mask)
    return prepare


def corrupt(rel: str) -> Prepare:
    """A release's picture cut short: its header reads, its pixels do not."""
    def prepare(ws: Workspace) -> None:
        path = ws.root / rel
        path.write_bytes(path.read_bytes()[:200])
    return prepare


def renamed(rel: str, name: str) -> Prepare:
    return lambda ws: (ws.root / rel).rename((ws.root / rel).with_name(name))


def small_mask(ws: Workspace) -> None:
    mask = ws.root / "ph2/PH2Dataset/PH2 Dataset images/IMD016/IMD016_lesion/IMD016_lesion.bmp"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(mask)


def derm_cases(ws: Workspace) -> None:
    """Two files differing only in case, and a row naming them in a third spelling."""
    images = ws.root / "derm7pt/images/FCL"
    shutil.copy(images / "Fcl068.jpg", images / "FCL068.jpg")
    set_cell("derm7pt/meta/meta.csv", 5, "derm", "fcl/fcl068.jpg")(ws)


def ph2_txt_args(ws: Workspace) -> list[str]:
    """bcc.data.ph2 reading the txt table (--table)."""
    return [str(ws.root / "ph2"), "--out", str(ws.root / "out"), "--table", str(ws.root / "ph2/PH2Dataset/PH2_dataset.txt")]


HAM_META = "ham/HAM10000_metadata.csv"
DERM_META = "derm7pt/meta/meta.csv"

CASES: list[Case] = [
    # HAM10000 and ISIC 2018 Task 3
    Case("ham10000/metadata-missing", HAM, on("ham"), 2,
         r"ham: no HAM10000_metadata\.csv or ISIC2018_Task3_Training_GroundTruth\.csv or .* found \(searched 3 levels "
         r"down\); point at the folder holding the release", steps(ham, unlink(HAM_META))),
    Case("ham10000/metadata-file-missing", HAM,
         lambda ws: [str(ws.root / "ham/nope.csv"), str(ws.root / "ham/HAM10000_images_part_1"), "--out",
                     str(ws.root / "out")], 2,
         r"nope\.csv: file not found; give HAM10000_metadata\.csv or an ISIC 2018 Task 3 ground truth", ham),
    Case("ham10000/missing-column", HAM, on("ham"), 2,
         r"HAM10000_metadata\.csv: line 1: missing column\(s\) \['dx'\]", steps(ham, table(HAM_META, lambda df: df.pop("dx")))),
    Case("ham10000/unknown-dx", HAM, on("ham"), 2,
         r"HAM10000_metadata\.csv: line 4, column dx: 'basal' is not one of akiec, bcc, bkl, df, mel, nv, vasc; fix the "
         r"value", steps(ham, set_cell(HAM_META, 2, "dx", "basal"))),
    Case("ham10000/image-absent", HAM, on("ham"), 2,
         r"HAM10000_metadata\.csv: line 4: no image file for 'ISIC_0024308' in .*HAM10000_images_part_1, "
         r".*HAM10000_images_part_2 \(tried \.jpg/\.jpeg/\.png, any case\); give every image folder",
         steps(ham, unlink("ham/HAM10000_images_part_1/ISIC_0024308.jpg"))),
    Case("ham10000/duplicate-image-id", HAM, on("ham"), 2,
         r"HAM10000_metadata\.csv: duplicate image_id \['ISIC_0024306'\] on lines 2, 5; keep one row each",
         steps(ham, set_cell(HAM_META, 3, "image_id", "ISIC_0024306"))),
    Case("ham10000/image-in-two-folders", HAM, on("ham"), 2,
         r"HAM10000_metadata\.csv: line 2: 'ISIC_0024306' has 2 image files in .*part_1/ISIC_0024306\.jpg, "
         r".*part_2/ISIC_0024306\.jpg\); keep one",
         steps(ham, lambda ws: shutil.copy(ws.root / "ham/HAM10000_images_part_1/ISIC_0024306.jpg",
                                           ws.root / "ham/HAM10000_images_part_2/ISIC_0024306.jpg"))),
    Case("ham10000/image-symlink-outside", HAM, on("ham"), 2,
         r"HAM10000_metadata\.csv: line 2: .*ISIC_0024306\.jpg " + OUTSIDE,
         steps(ham, outside_link("ham/HAM10000_images_part_1/ISIC_0024306.jpg"))),
    Case("ham10000/out-exists", HAM, on("ham"), 2, r"out exists: choose a new --out", steps(ham, existing_out)),
    Case("ham10000/bad-aspect", HAM, on("ham", "--aspect", "4-3"), 2,
         r"--aspect '4-3': give auto, none or W:H with W/H in \[0\.2, 5\]", ham),
    Case("ham10000/isic2018-not-one-hot", HAM, on("isic"), 2,
         r"ISIC2018_Task3_Training_GroundTruth\.csv: line 3: expected exactly one 1\.0 among \['MEL', 'NV', 'BCC'",
         steps(isic2018, set_cell("isic/ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv",
                                  1, "MEL", "1.0"))),
    Case("ham10000/isic2018-training-without-groupings", HAM,
         lambda ws: [str(ws.root / "isic/ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv"),
                     str(ws.root / "isic/ISIC2018_Task3_Training_Input"), "--out", str(ws.root / "out")], 2,
         r"Training_GroundTruth\.csv: the training set has several images of one lesion; give its lesion groupings "
         r"\(--groupings ISIC2018_Task3_Training_LesionGroupings\.csv\)", isic2018),
    Case("ham10000/lesion-with-two-diagnoses", HAM, on("ham"), 2,
         r"HAM10000_metadata\.csv: lesion 'HAM_0000001' has bcc on line 2, bkl on line 3: the images of one lesion share "
         r"its diagnosis, BCC or not; fix the wrong value", steps(ham, set_cell(HAM_META, 1, "dx", "bkl"))),
    Case("ham10000/isic2018-lesion-with-two-diagnoses", HAM, on("isic"), 2,
         r"Training_GroundTruth\.csv: lesion 'HAM_0000001' has BCC on line 2, BKL on line 3",
         steps(isic2018, set_cell("isic/ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv",
                                  1, "BCC", "0.0"),
               set_cell("isic/ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv", 1, "BKL",
                        "1.0"))),
    Case("ham10000/renamed-one-hot-table-without-its-release", HAM,
         lambda ws: [str(ws.root / "isic/ISIC2018_Task3_Training_GroundTruth/GroundTruth_latest.csv"),
                     str(ws.root / "isic/ISIC2018_Task3_Training_Input"), "--out", str(ws.root / "out")], 2,
         r"GroundTruth_latest\.csv: a one-hot ground truth .* of the ISIC 2018 training or test set; say which: "
         r"--groupings .* or --layout isic2018_test",
         steps(isic2018, renamed("isic/ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv",
                                 "GroundTruth_latest.csv"))),
    Case("ham10000/unreadable-image-named-in-the-release", HAM, on("ham"), 2,
         r"HAM10000_metadata\.csv: line 4: cannot read image .*ham/HAM10000_images_part_1/ISIC_0024308\.jpg "
         r"\(corrupt or truncated.*nothing was written", steps(ham, corrupt("ham/HAM10000_images_part_1/ISIC_0024308.jpg"))),
    Case("ham10000/two-releases", HAM, on("ham"), 2,
         r"ham: holds 2 releases \(ham10000: .*; isic2018_test: .*\); choose one with --layout",
         steps(ham, lambda ws: public_sets.isic2018_test(ws.root / "ham"))),
    # Derm7pt
    Case("derm7pt/meta-missing", DERM, on("derm7pt"), 2,
         r"meta/meta\.csv: file not found; the release folder holds meta/meta\.csv", steps(derm, unlink(DERM_META))),
    Case("derm7pt/missing-column", DERM, on("derm7pt"), 2,
         r"meta\.csv: line 1: missing column\(s\) \['vascular_structures'\]",
         steps(derm, table(DERM_META, lambda df: df.pop("vascular_structures")))),
    Case("derm7pt/unknown-criterion", DERM, on("derm7pt"), 2,
         r"meta\.csv: line 3, column pigment_network: 'typcal' is not one of: absent, typical, atypical; fix the value",
         steps(derm, set_cell(DERM_META, 1, "pigment_network", "typcal"))),
    Case("derm7pt/unknown-vessels", DERM, on("derm7pt"), 2,
         r"meta\.csv: line 4, column vascular_structures: 'arborising' is not one of: absent, arborizing, comma, dotted",
         steps(derm, set_cell(DERM_META, 2, "vascular_structures", "arborising"))),
    Case("derm7pt/unknown-diagnosis", DERM, on("derm7pt"), 2,
         r"meta\.csv: line 2, column diagnosis: 'basal cell carcinom' is not one of: basal cell carcinoma, blue nevus",
         steps(derm, set_cell(DERM_META, 0, "diagnosis", "basal cell carcinom"))),
    Case("derm7pt/image-absent", DERM, on("derm7pt"), 2,
         r"meta\.csv: line 3: image .*images/NEL/Nel028\.jpg not found \(not even in another case\); fix the derm path",
         steps(derm, unlink("derm7pt/images/NEL/Nel028.jpg"))),
    Case("derm7pt/path-in-two-cases", DERM, on("derm7pt"), 2,
         r"meta\.csv: line 7: derm 'fcl/fcl068\.jpg' matches 2 files differing only in case \(FCL/FCL068\.jpg, "
         r"FCL/Fcl068\.jpg\); fix the path to name one", steps(derm, derm_cases)),
    Case("derm7pt/path-escaping", DERM, on("derm7pt"), 2, r"meta\.csv: line 3: .*x\.jpg " + OUTSIDE,
         steps(derm, lambda ws: public_sets.picture(ws.root / "elsewhere/x.jpg", (24, 24), 1),
               set_cell(DERM_META, 1, "derm", "../../elsewhere/x.jpg"))),
    Case("derm7pt/duplicate-image", DERM, on("derm7pt"), 2,
         r"meta\.csv: duplicate image_id \['NEL_Nel026'\] on lines 2, 3; keep one row each",
         steps(derm, set_cell(DERM_META, 1, "derm", "NEL/Nel026.jpg"))),
    Case("derm7pt/split-index-out-of-range", DERM, on("derm7pt"), 2,
         r"valid_indexes\.csv: line 2: '99' is not a row index of meta/meta\.csv \(0 to 9\)",
         steps(derm, set_cell("derm7pt/meta/valid_indexes.csv", 0, "indexes", "99"))),
    Case("derm7pt/out-exists", DERM, on("derm7pt"), 2, r"out exists: choose a new --out", steps(derm, existing_out)),
    # PH2
    Case("ph2/table-missing", PH2, on("ph2"), 2,
         r"ph2: no PH2_dataset\.xlsx or PH2_dataset\.txt found \(searched 4 levels down\)",
         steps(ph2, unlink("ph2/PH2Dataset/PH2_dataset.xlsx"), unlink("ph2/PH2Dataset/PH2_dataset.txt"))),
    Case("ph2/not-a-workbook", PH2, on("ph2"), 2,
         r"PH2_dataset\.xlsx: cannot be read as an Excel workbook .*pass --table PH2_dataset\.txt",
         steps(ph2, lambda ws: (ws.root / "ph2/PH2Dataset/PH2_dataset.xlsx").write_text("Name,Diagnosis\n"))),
    Case("ph2/unknown-pigment-network", PH2, on("ph2"), 2,
         r"PH2_dataset\.xlsx: row 15, column Pigment Network: 'X' is not one of T \(typical\), AT \(atypical\), "
         r"A \(absent\)", steps(ph2, xlsx_cell("G15", "X"))),
    Case("ph2/no-clinical-diagnosis", PH2, on("ph2"), 2,
         r"PH2_dataset\.xlsx: row 16: expected one X among the Clinical Diagnosis columns .*got 0",
         steps(ph2, xlsx_cell("D16", ""))),
    Case("ph2/txt-missing-column", PH2, ph2_txt_args, 2,
         r"PH2_dataset\.txt: line 1: missing column\(s\) \['pigment network'\]",
         steps(ph2, txt_line(1, lambda t: t.replace("Pigment Network", "Network")))),
    Case("ph2/txt-unknown-clinical-diagnosis", PH2, ph2_txt_args, 2,
         r"PH2_dataset\.txt: line 4, column Clinical Diagnosis: '3' is not 0, 1 or 2", steps(ph2, txt_cell(4, 2, "3"))),
    Case("ph2/txt-row-missing-a-cell", PH2, ph2_txt_args, 2,
         r"PH2_dataset\.txt: line 3: 9 cells, but the header \(line 1\) has 10",
         steps(ph2, txt_line(3, lambda t: re.sub(r"(?<!\|)\|(?!\|)", "", t, count=1)))),  # two cells made one
    Case("ph2/image-absent", PH2, on("ph2"), 2,
         r"PH2_dataset\.xlsx: row 15: no image file for 'IMD009' in .*IMD009_Dermoscopic_Image \(tried "
         r"\.bmp/\.jpg/\.jpeg/\.png, any case\); every PH2 case has",
         steps(ph2, unlink("ph2/PH2Dataset/PH2 Dataset images/IMD009/IMD009_Dermoscopic_Image/IMD009.bmp"))),
    Case("ph2/duplicate-image", PH2, on("ph2"), 2,
         r"PH2_dataset\.xlsx: image 'IMD003' on rows 14, 16; keep one row each", steps(ph2, xlsx_cell("A16", "IMD003"))),
    Case("ph2/mask-wrong-size", PH2, on("ph2"), 2,
         r"IMD016_lesion\.bmp: lesion mask is 10x10 but its image IMD016\.bmp is 24x18; a mask must have its image's size",
         steps(ph2, small_mask)),
    Case("ph2/out-exists", PH2, on("ph2"), 2, r"out exists: choose a new --out", steps(ph2, existing_out)),
    Case("ph2/mask-marks-nothing", PH2, on("ph2"), 0,
         r"warning: 1 lesion mask\(s\) mark no lesion \(IMD016 \(all 0: nothing marked\)\): their cases are converted "
         r"without one, kept out of the lesion statistics", steps(ph2, flat_mask(0)), writes_nothing=False),
    Case("ph2/mask-marks-everything", PH2, on("ph2"), 0,
         r"warning: 1 lesion mask\(s\) mark no lesion \(IMD016 \(every pixel marked: the whole picture\)\)",
         steps(ph2, flat_mask(255)), writes_nothing=False),
    Case("ph2/unreadable-image-named-in-the-release", PH2, on("ph2"), 2,
         r"PH2_dataset\.xlsx: row 15: cannot read image .*PH2 Dataset images/IMD009/IMD009_Dermoscopic_Image/IMD009\.bmp "
         r"\(.*nothing was written",
         steps(ph2, corrupt("ph2/PH2Dataset/PH2 Dataset images/IMD009/IMD009_Dermoscopic_Image/IMD009.bmp"))),
    Case("derm7pt/unreadable-image-named-in-the-release", DERM, on("derm7pt"), 2,
         r"meta\.csv: line 3: cannot read image .*derm7pt/images/NEL/Nel028\.jpg \(.*nothing was written",
         steps(derm, corrupt("derm7pt/images/NEL/Nel028.jpg"))),
    # all of them at once
    Case("public/none-found", PUBLIC, on("downloads"), 2,
         r"downloads: none of the supported sets found \(HAM10000_metadata\.csv or", lambda ws: (ws.root / "downloads").mkdir()),
    Case("public/out-exists", PUBLIC, on("derm7pt"), 2, r"out exists: choose a new --out", steps(derm, existing_out)),
    Case("public/two-copies", PUBLIC, lambda ws: [str(ws.root), "--out", str(ws.root / "out")], 2,
         r"2 copies of derm7pt \(.*a/derm7pt; .*b/derm7pt\); keep one",
         steps(lambda ws: public_sets.derm7pt(ws.root / "a" / "derm7pt"),
               lambda ws: public_sets.derm7pt(ws.root / "b" / "derm7pt"))),
    Case("public/a-set-with-a-bad-value", PUBLIC, lambda ws: [str(ws.root), "--out", str(ws.root / "out")], 2,
         r"HAM10000_metadata\.csv: line 4, column dx: 'basal' is not one of",
         steps(ham, derm, set_cell(HAM_META, 2, "dx", "basal"))),
]
