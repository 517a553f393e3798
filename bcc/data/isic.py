"""Convert the ISIC 2019 training set into the bcc dataset contract, for external validation.

ISIC 2019 has a biopsy-grade diagnosis per image but no pattern annotations, so the converted set has a
`diagnosis` column (1 = BCC) and one annotation row per image from the rater `isic2019` with every code
blank: consensus keeps the codes unknown (masked out of the pattern losses) and the label is the diagnosis.

    python -m bcc.data.isic ISIC_2019_Training_GroundTruth.csv ISIC_2019_Training_Input/ --out data/isic2019 \
        [--metadata ISIC_2019_Training_Metadata.csv] [--copy]

With `--metadata`, `lesion_id` becomes `group`, so images of one lesion never span two folds.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from bcc.core.cli import run_command, tool_parser
from bcc.core.patterns import CODES
from bcc.data.contract import DatasetError, read_csv

DIAGNOSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
RATER = "isic2019"


def _read_ground_truth(path: Path) -> pd.DataFrame:
    gt = read_csv(path, ("image",) + DIAGNOSES[:-1], ("UNK",))
    values = gt[[c for c in DIAGNOSES if c in gt.columns]].apply(pd.to_numeric, errors="coerce")
    bad = values.isna().any(axis=1) | ~values.isin([0, 1]).all(axis=1) | values.sum(axis=1).ne(1)
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
        raise DatasetError(f"{path}: line {line}: expected exactly one 1.0 among {list(DIAGNOSES)} (one-hot), "
                           f"got {gt.loc[bad].iloc[0].to_dict()}")
    return gt.assign(diagnosis=values["BCC"].astype(int).astype(str))


def _find_image(images_dir: Path, name: str) -> Path:
    for ext in (".jpg", ".jpeg", ".png", ".JPG"):
        if (images_dir / f"{name}{ext}").is_file():
            return images_dir / f"{name}{ext}"
    raise DatasetError(f"{images_dir}: no image file for {name!r} (tried .jpg/.jpeg/.png); "
                       f"point IMAGES_DIR at ISIC_2019_Training_Input")


def convert(ground_truth: Path, images_dir: Path, out: Path, metadata: Path | None = None,
            copy: bool = False) -> Path:
    """Write the dataset contract into `out` (atomically: a temp dir renamed into place when complete)."""
    gt = _read_ground_truth(Path(ground_truth))
    images_dir, out = Path(images_dir).resolve(), Path(out)
    sources = [_find_image(images_dir, name) for name in gt["image"]]
    table = pd.DataFrame({"image_id": gt["image"], "image": [f"images/{p.name}" for p in sources],
                          "source": "isic2019", "diagnosis": gt["diagnosis"]})
    if metadata is not None:
        meta = read_csv(Path(metadata), ("image",), ("age_approx", "anatom_site_general", "lesion_id", "sex"))
        lesion = meta.set_index("image").reindex(gt["image"])["lesion_id"].fillna("")
        table.insert(3, "group", np.where(lesion.eq(""), gt["image"], lesion))  # no lesion id: its own group
    annotations = pd.DataFrame({"image_id": gt["image"], "rater": RATER, **{c: "" for c in CODES}})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "images").mkdir()
        for src in sources:
            (shutil.copy2 if copy else os.symlink)(src, tmp / "images" / src.name)
        table.to_csv(tmp / "images.csv", index=False, lineterminator="\n")
        annotations.to_csv(tmp / "annotations.csv", index=False, lineterminator="\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = tool_parser("data.isic", "ISIC 2019 → bcc dataset contract (diagnosis only)")
    parser.add_argument("ground_truth", type=Path, help="ISIC_2019_Training_GroundTruth.csv")
    parser.add_argument("images_dir", type=Path, help="ISIC_2019_Training_Input/")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--metadata", type=Path, help="ISIC_2019_Training_Metadata.csv (lesion_id → group)")
    parser.add_argument("--copy", action="store_true", help="copy images instead of symlinking them")
    args = parser.parse_args(argv)

    def body() -> None:
        out = convert(args.ground_truth, args.images_dir, args.out, args.metadata, args.copy)
        table = pd.read_csv(out / "images.csv")
        print(f"{len(table)} images → {out} (BCC {int(table['diagnosis'].sum())}, "
              f"non-BCC {int((1 - table['diagnosis']).sum())})")

    return run_command("bcc.data.isic", body, args.debug)


if __name__ == "__main__":
    sys.exit(main())
