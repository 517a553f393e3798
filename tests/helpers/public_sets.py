"""Tiny copies of the public dermoscopy releases in their official layouts (generated images of a few
pixels, metadata with the real column sets), for the adapters' tests and the bad-input table.

Each builder writes under `root` and returns the folder a user would point the adapter at. The edge cases
of the real releases are in them: HAM10000's two image folders and lesions with several images, an
upper-case ``.JPG``; Derm7pt's row naming ``FCl/Fcl068.jpg`` for the file ``FCL/Fcl068.jpg`` and its
split files; PH2's xlsx laid out as the official one (a legend above the header row, X marks) and its
pipe-separated txt with the legend below, BMP images and masks.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
from PIL import Image

HAM_COLUMNS = ("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization")
ONE_HOT = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
#: (lesion, dx) of each HAM10000 image: 12 images of 9 lesions, 4 BCC images of 3 lesions
HAM_ROWS = [("HAM_0000001", "bcc"), ("HAM_0000001", "bcc"), ("HAM_0000002", "nv"), ("HAM_0000003", "mel"),
            ("HAM_0000003", "mel"), ("HAM_0000004", "bcc"), ("HAM_0000005", "bkl"), ("HAM_0000006", "nv"),
            ("HAM_0000006", "nv"), ("HAM_0000007", "akiec"), ("HAM_0000008", "bcc"), ("HAM_0000009", "df")]


def picture(path: Path, size: tuple[int, int], seed: int) -> Path:
    """A small random RGB picture (`size` = width, height), in the format its suffix says."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP"}[path.suffix.lower()]
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, fmt)
    return path


def ham_ids() -> list[str]:
    return [f"ISIC_{24306 + i:07d}" for i in range(len(HAM_ROWS))]


def _ham_images(folders: list[Path], square: bool) -> None:
    """The images spread over `folders` (part 1, part 2); 600 x 450 is 32 x 24 here, a squeezed copy 24 x 24."""
    for i, name in enumerate(ham_ids()):
        suffix = ".JPG" if i == 5 else ".jpg"  # the suffix in any case
        picture(folders[i % len(folders)] / f"{name}{suffix}", (24, 24) if square else (32, 24), i)


def ham10000(root: Path, parts: int = 2, square: bool = False) -> Path:
    """HAM10000 as the Dataverse release: HAM10000_metadata.csv and HAM10000_images_part_1/, _part_2/ (with
    `parts=1`, one HAM10000_images/ as a resized copy has)."""
    root.mkdir(parents=True, exist_ok=True)
    names = ["HAM10000_images"] if parts == 1 else [f"HAM10000_images_part_{k}" for k in (1, 2)]
    _ham_images([root / n for n in names], square)
    rows = [(lesion, image, dx, "histo", "55.0", "female", "back") for image, (lesion, dx) in zip(ham_ids(), HAM_ROWS, strict=True)]
    pd.DataFrame(rows, columns=list(HAM_COLUMNS)).to_csv(root / "HAM10000_metadata.csv", index=False)
    return root


def _one_hot(dx: str) -> list[str]:
    return ["1.0" if c == dx.upper() else "0.0" for c in ONE_HOT]


def isic2018_training(root: Path) -> Path:
    """ISIC 2018 Task 3 training as its archives unpack: the ground truth in a folder of its own, the
    lesion groupings beside it, the images (and the archive's ATTRIBUTION/LICENSE texts) in _Input/."""
    gt = root / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv"
    gt.parent.mkdir(parents=True)
    _ham_images([root / "ISIC2018_Task3_Training_Input"], square=False)
    (root / "ISIC2018_Task3_Training_Input" / "ATTRIBUTION.txt").write_text("HAM10000, CC BY-NC 4.0\n")
    pd.DataFrame([[image, *_one_hot(dx)] for image, (_, dx) in zip(ham_ids(), HAM_ROWS, strict=True)],
                 columns=["image", *ONE_HOT]).to_csv(gt, index=False)
    pd.DataFrame([(image, lesion, "histopathology") for image, (lesion, _) in zip(ham_ids(), HAM_ROWS, strict=True)],
                 columns=["image", "lesion_id", "diagnosis_confirm_type"]).to_csv(
        root / "ISIC2018_Task3_Training_LesionGroupings.csv", index=False)
    return root


def isic2018_test(root: Path) -> Path:
    """ISIC 2018 Task 3 test: ISIC2018_Task3_Test_GroundTruth.csv (one-hot) and ISIC2018_Task3_Test_Input/."""
    root.mkdir(parents=True, exist_ok=True)
    dxs = ["bcc", "nv", "mel", "bcc", "vasc", "nv"]
    ids = [f"ISIC_{34524 + i:07d}" for i in range(len(dxs))]
    for i, name in enumerate(ids):
        picture(root / "ISIC2018_Task3_Test_Input" / f"{name}.jpg", (32, 24), 100 + i)
    pd.DataFrame([[image, *_one_hot(dx)] for image, dx in zip(ids, dxs, strict=True)], columns=["image", *ONE_HOT]).to_csv(
        root / "ISIC2018_Task3_Test_GroundTruth.csv", index=False)
    return root


DERM_CRITERIA = ("pigment_network", "streaks", "pigmentation", "regression_structures", "dots_and_globules",
                 "blue_whitish_veil", "vascular_structures")
#: (diagnosis, pigment_network, vascular_structures, derm path as meta.csv spells it)
DERM_ROWS = [("basal cell carcinoma", "absent", "arborizing", "NEL/Nel026.jpg"),
             ("basal cell carcinoma", "absent", "absent", "NEL/Nel028.jpg"),
             ("basal cell carcinoma", "typical", "arborizing", "NEL/Nel031.jpg"),
             ("clark nevus", "typical", "absent", "FAL/Fal001.jpg"),
             ("clark nevus", "atypical", "dotted", "FAL/Fal002.jpg"),
             ("melanoma (in situ)", "atypical", "absent", "FCl/Fcl068.jpg"),  # the file is FCL/Fcl068.jpg
             ("seborrheic keratosis", "absent", "hairpin", "Gal/Gal010.jpg"),
             ("vascular lesion", "absent", "within regression", "Gal/Gal011.jpg"),
             ("blue nevus", "absent", "absent", "A1l/A1l005.jpg"),
             ("melanoma (less than 0.76 mm)", "atypical", "linear irregular", "A1l/A1l006.jpg")]
DERM_SPLIT = {"train": [0, 3, 4, 6, 8], "valid": [1, 5], "test": [2, 7, 9]}


def derm7pt(root: Path, official: bool = True) -> Path:
    """The Derm7pt release folder: meta/meta.csv and images/<folder>/<file>. `official`: release_v0's columns
    (case_num, the clinical photograph, …) and meta/{train,valid,test}_indexes.csv; otherwise the columns of
    the cropped Derm7pt+ copy and no split files."""
    rows = []
    for i, (diagnosis, network, vessels, derm) in enumerate(DERM_ROWS):
        on_disk = "FCL/Fcl068.jpg" if derm == "FCl/Fcl068.jpg" else derm
        picture(root / "images" / on_disk, (24, 24), 200 + i)
        clinic = on_disk.replace(".jpg", "_clinic.jpg")
        if official:
            picture(root / "images" / clinic, (24, 16), 300 + i)
        criteria = {c: "absent" for c in DERM_CRITERIA} | {"pigment_network": network, "vascular_structures": vessels,
                                                           "dots_and_globules": "irregular"}
        row = {"case_num": str(i + 1), "diagnosis": diagnosis, "seven_point_score": "1", **criteria,
               "level_of_diagnostic_difficulty": "medium", "elevation": "flat", "location": "back", "sex": "female",
               "clinic": clinic, "derm": derm, "management": "excision"}
        rows.append(row if official else {k: row[k] for k in ("diagnosis", *DERM_CRITERIA, "derm")})
    (root / "meta").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(root / "meta" / "meta.csv", index=False)
    if official:
        for split, indexes in DERM_SPLIT.items():
            pd.DataFrame({"indexes": indexes}).to_csv(root / "meta" / f"{split}_indexes.csv", index=False)
    return root


#: (clinical diagnosis 0/1/2, histological diagnosis, pigment network, colours)
PH2_ROWS = {"IMD003": (0, "", "T", "4"), "IMD009": (0, "", "T", "3"), "IMD016": (1, "", "AT", "3 4"),
            "IMD022": (1, "Dysplastic Nevus", "T", "3 4"), "IMD058": (2, "Melanoma", "AT", "3 4 5 6"),
            "IMD061": (2, "Lentigo Maligna", "AT", "4 6")}
PH2_SIZE = (24, 18)  # the official 768 x 560, in miniature
COLOURS = ("White", "Red", "Light-Brown", "Dark-Brown", "Blue-Gray", "Black")
TXT_COLUMNS = ("Name", "Histological Diagnosis", "Clinical Diagnosis", "Asymmetry", "Pigment Network",
               "Dots/Globules", "Streaks", "Regression Areas", "Blue-Whitish Veil", "Colors")
TXT_LEGEND = """
Legends:

Clinical Diagnosis:
\t0 - Common Nevus;
\t1 - Atypical Nevus;
\t2 - Melanoma.

Asymmetry:
\t0 - Fully Symmetric;
\t1 - Symetric in 1 axe;
\t2 - Fully Asymmetric.

Pigment Network, Dots/Globules, Streaks, Regression Areas, and Blue-Whitish Veil:
\tA - Absent;
\tAT - Atypical;
\tP - Present;
\tT - Typical.

Colors:
\t1 - White;
\t2 - Red;
\t3 - Light-Brown;
\t4 - Dark-Brown;
\t5 - Blue-Gray;
\t6 - Black.
"""


def _ph2_records() -> list[list[str]]:
    """The criteria of each image in the txt's column order (Name … Colors)."""
    return [[name, histology, str(clinical), "2" if clinical == 2 else "0", network, "A", "A", "A",
             "P" if clinical == 2 else "A", colours] for name, (clinical, histology, network, colours) in PH2_ROWS.items()]


def ph2_txt(path: Path) -> Path:
    """PH2_dataset.txt as the release writes it: a ``||``-separated table whose ABCD criteria are ``|``-separated
    within their group, cells padded to the header's widths, and the legend below."""
    widths = [max(len(c), 6) + 4 for c in TXT_COLUMNS]

    def line(cells: list[str]) -> str:
        padded = [c.center(w) for c, w in zip(cells, widths, strict=True)]
        return "||" + "||".join(padded[:3]) + "||" + "|".join(padded[3:9]) + "||" + padded[9] + "||"

    path.write_text("\n".join([line(list(TXT_COLUMNS)), *(line(r) for r in _ph2_records())]) + "\n" + TXT_LEGEND)
    return path


def ph2_xlsx(path: Path) -> Path:
    """PH2_dataset.xlsx as the release lays it out: a legend block (F2:K9), the 'Clinical Diagnosis' and
    'Colors' group titles (row 12), the header row 13 (allowed values on a second line), an X per class/colour."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Folha1"
    ws["F2"] = "Legends"
    for row, (key, value) in enumerate([(0, "Fully Simmetric"), (1, "Symmetric in 1 axes"), (2, "Fully Asymmetric")], 3):
        ws.cell(row, 7, key)
        ws.cell(row, 8, value)
    ws["F3"] = "Asymmetry"
    ws["F6"] = "Pigment Network\nDots/Globules\nStreaks\nRegression Areas\nBlue-Whitish Veil"
    for row, (key, value) in enumerate([("AT", "Atypical"), ("T", "Typical"), ("A", "Absent"), ("P", "Present")], 6):
        ws.cell(row, 7, key)
        ws.cell(row, 8, value)
    ws["C12"] = "Clinical Diagnosis"
    ws.merge_cells("C12:E12")
    ws["L12"] = "Colors"
    ws.merge_cells("L12:Q12")
    header = ["Image Name", "Histological Diagnosis", "Common Nevus", "Atypical Nevus", "Melanoma",
              "Asymmetry\n(0/1/2)", "Pigment Network\n(AT/T)", "Dots/Globules\n(A/AT/T)", "Streaks\n(A/P)",
              "Regression Areas\n(A/P)", "Blue-Whitish Veil\n(A/P)", *COLOURS]
    for col, title in enumerate(header, 1):
        ws.cell(13, col, title)
    for row, record in enumerate(_ph2_records(), 14):
        name, histology, clinical, asymmetry, *criteria, colours = record
        ws.cell(row, 1, name)
        if histology:
            ws.cell(row, 2, histology)
        ws.cell(row, 3 + int(clinical), "X")
        ws.cell(row, 6, int(asymmetry))
        for col, value in enumerate(criteria, 7):
            ws.cell(row, col, value)
        for colour in colours.split():
            ws.cell(row, 11 + int(colour), "X")
    wb.save(path)
    return path


def ph2(root: Path, tables: tuple[str, ...] = ("xlsx", "txt"), copy: bool = False) -> Path:
    """The PH2Dataset folder: the criteria table(s) and 'PH2 Dataset images/IMDxxx/' with the dermoscopic
    image, the lesion mask and the colour-region masks (IMDxxx_roi/, unused). Official: BMP; `copy`: the
    JPEG images and PNG masks of a re-encoded copy."""
    root = root / "PH2Dataset"
    for i, name in enumerate(PH2_ROWS):
        case = root / "PH2 Dataset images" / name
        picture(case / f"{name}_Dermoscopic_Image" / f"{name}{'.jpg' if copy else '.bmp'}", PH2_SIZE, 400 + i)
        mask = np.zeros(PH2_SIZE[::-1], np.uint8)
        mask[4:14, 5:19] = 255
        (case / f"{name}_lesion").mkdir()
        Image.fromarray(mask).save(case / f"{name}_lesion" / f"{name}_lesion{'.png' if copy else '.bmp'}")
        (case / f"{name}_roi").mkdir()
        Image.fromarray(mask).save(case / f"{name}_roi" / f"{name}_R1_Label4.bmp")
    if "xlsx" in tables:
        ph2_xlsx(root / "PH2_dataset.xlsx")
    if "txt" in tables:
        ph2_txt(root / "PH2_dataset.txt")
    return root
