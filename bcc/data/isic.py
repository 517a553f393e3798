"""Convert the ISIC 2019 training set into the bcc dataset contract, for external validation.

ISIC 2019 has a biopsy-grade diagnosis per image but no pattern annotations, so the converted set has a
`diagnosis` column (1 = BCC) and one annotation row per image from the rater `isic2019` with every code
blank: consensus keeps the codes unknown (masked out of the pattern losses) and the label is the diagnosis.

    python -m bcc.data.isic ISIC_2019_Training_GroundTruth.csv ISIC_2019_Training_Input/ --out data/isic2019 \
        [--metadata ISIC_2019_Training_Metadata.csv] [--copy | --symlink]

With `--metadata`, `lesion_id` becomes `group`, so images of one lesion never span two folds. The images
are hard-linked into ``<out>/images/`` (no copy, and the dataset holds its files, as the contract wants);
``--copy`` copies them (e.g. from another filesystem), ``--symlink`` links them, after which the tools
reading the dataset need ``--allow-outside``. An existing `--out` is refused, never replaced; an image
file resolving outside IMAGES_DIR (a symbolic link) is read only with ``--allow-outside``. What every
adapter shares lives in `bcc.data.conversion`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bcc.data import conversion
from bcc.data.csvfile import read_csv
from bcc.data.errors import DatasetError
from bcc.data.paths import SourceFolders, check_how
from bcc.data.schema import Rule, TableSchema, unique

DIAGNOSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
RATER = "isic2019"
SUFFIXES = (".jpg", ".jpeg", ".png")  # matched in any case (.JPG too)
IMAGES_FIX = "point IMAGES_DIR at ISIC_2019_Training_Input"


def one_hot(gt: pd.DataFrame, columns: tuple[str, ...], path: Path) -> pd.Series:
    """The column holding each row's 1 of a one-hot ground truth (ISIC 2018 and 2019 alike); a row with no
    1, several, or a value other than 0/1 is an error naming its line."""
    present = [c for c in columns if c in gt.columns]
    values = gt[present].apply(pd.to_numeric, errors="coerce")
    TableSchema([Rule("one-hot", lambda t: values.notna().all(axis=1) & values.isin([0, 1]).all(axis=1)
                      & values.sum(axis=1).eq(1),
                      lambda f: f"{f.path}: line {f.first}: expected exactly one 1.0 among {list(columns)} (one-hot), "
                                f"got {f.value[['image', *present]].to_dict()}")]).validate(gt, path)
    return values.idxmax(axis=1)


def _read_ground_truth(path: Path) -> pd.DataFrame:
    gt = TableSchema([unique(["image"])]).validate(read_csv(path, ("image", *DIAGNOSES[:-1]), ("UNK",)), path)
    return gt.assign(diagnosis=one_hot(gt, DIAGNOSES, path).eq("BCC").astype(int).astype(str))


def plan(ground_truth: Path, images_dir: Path, metadata: Path | None = None,
         allow_outside: bool = False) -> conversion.Plan:
    """The ISIC 2019 training set as a :class:`~bcc.data.conversion.Plan` (diagnosis only; `metadata`'s
    ``lesion_id`` as group)."""
    ground_truth = Path(ground_truth)
    if not ground_truth.is_file():
        raise DatasetError(f"{ground_truth}: file not found; give ISIC_2019_Training_GroundTruth.csv")
    gt = _read_ground_truth(ground_truth)
    images_dir = conversion.folder(images_dir, IMAGES_FIX)
    inside = SourceFolders([images_dir], allow_outside)
    files = conversion.image_files([images_dir], SUFFIXES)
    wheres = [f"{ground_truth}: line {line}" for line in gt.index]
    sources = [inside.check(conversion.find_image(files, name, where, str(images_dir), SUFFIXES, IMAGES_FIX), where)
               for where, name in zip(wheres, gt["image"], strict=True)]
    table = pd.DataFrame({"image_id": gt["image"].to_numpy(), "image": [f"images/{p.name}" for p in sources],
                          "source": "isic2019", "diagnosis": gt["diagnosis"].to_numpy()})
    if metadata is not None:
        meta = TableSchema([unique(["image"])]).validate(
            read_csv(Path(metadata), ("image",), ("age_approx", "anatom_site_general", "lesion_id", "sex")), Path(metadata))
        lesion = meta.set_index("image").reindex(gt["image"])["lesion_id"].fillna("").to_numpy()
        table.insert(3, "group", np.where(lesion == "", table["image_id"], lesion))  # no lesion id: its own group
    return conversion.Plan("isic2019", table, conversion.annotations(table["image_id"], RATER),
                           files=dict(zip(table["image"], sources, strict=True)),
                           origin={rel: (where, src) for rel, where, src in zip(table["image"], wheres, sources,
                                                                                strict=True)})


def convert(ground_truth: Path, images_dir: Path, out: Path, metadata: Path | None = None,
            how: str = "hard", allow_outside: bool = False) -> Path:
    """Write the dataset contract into `out` (atomically, validated: `conversion.write`).

    `how` places the images: ``hard`` links, ``copy`` or ``symlink`` (`paths.place_file`). An existing
    `out` is refused, so nothing of the user's is ever replaced or deleted.
    """
    check_how(how)
    conversion.refuse_existing(Path(out))
    return conversion.write(plan(ground_truth, images_dir, metadata, allow_outside), out, how)


def main(argv: list[str] | None = None) -> int:
    parser = conversion.conversion_parser("data.isic", "ISIC 2019 → bcc dataset contract (diagnosis only)")
    parser.add_argument("ground_truth", type=Path, help="ISIC_2019_Training_GroundTruth.csv")
    parser.add_argument("images_dir", type=Path, help="ISIC_2019_Training_Input/")
    parser.add_argument("--metadata", type=Path, help="ISIC_2019_Training_Metadata.csv (lesion_id → group)")
    args = parser.parse_args(argv)
    return conversion.run_conversion(
        "data.isic", args, lambda: plan(args.ground_truth, args.images_dir, args.metadata, args.allow_outside))


if __name__ == "__main__":
    sys.exit(main())
