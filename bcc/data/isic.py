"""Convert the ISIC 2019 training set into the bcc dataset contract, for external validation.

ISIC 2019 has a biopsy-grade diagnosis per image but no pattern annotations, so the converted set has a
`diagnosis` column (1 = BCC) and one annotation row per image from the rater `isic2019` with every code
blank: consensus keeps the codes unknown (masked out of the pattern losses) and the label is the diagnosis.

    python -m bcc.data.isic ISIC_2019_Training_GroundTruth.csv ISIC_2019_Training_Input/ --out data/isic2019 \
        [--metadata ISIC_2019_Training_Metadata.csv] [--copy | --symlink]

With `--metadata`, `lesion_id` becomes `group`, so images of one lesion never span two folds. The images
are hard-linked into ``<out>/images/`` (no copy, and the dataset holds its files, as the contract wants);
``--copy`` copies them (e.g. from another filesystem), ``--symlink`` links them, after which the tools
reading the dataset need ``--allow-outside``. An existing `--out` is refused, never replaced.
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
from bcc.core.io import clear_stale, temp_prefix
from bcc.core.patterns import CODES
from bcc.data.contract import LINK_MODES, DatasetError, check_unique, place_file, read_csv

DIAGNOSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
RATER = "isic2019"
SUFFIXES = (".jpg", ".jpeg", ".png")  # matched in any case (.JPG too)


def _read_ground_truth(path: Path) -> pd.DataFrame:
    gt = read_csv(path, ("image",) + DIAGNOSES[:-1], ("UNK",))
    check_unique(gt, ["image"], path)
    values = gt[[c for c in DIAGNOSES if c in gt.columns]].apply(pd.to_numeric, errors="coerce")
    bad = values.isna().any(axis=1) | ~values.isin([0, 1]).all(axis=1) | values.sum(axis=1).ne(1)
    if bad.any():
        raise DatasetError(f"{path}: line {bad.index[bad.to_numpy()][0]}: expected exactly one 1.0 among "
                           f"{list(DIAGNOSES)} (one-hot), got {gt.loc[bad].iloc[0].to_dict()}")
    return gt.assign(diagnosis=values["BCC"].astype(int).astype(str))


def _image_files(images_dir: Path) -> dict[str, list[Path]]:
    """name → the image files called so in `images_dir` (one directory listing, whatever the suffix case)."""
    if not images_dir.is_dir():
        raise DatasetError(f"{images_dir}: not a directory; point IMAGES_DIR at ISIC_2019_Training_Input")
    files: dict[str, list[Path]] = {}
    for p in sorted(images_dir.iterdir()):
        if p.suffix.lower() in SUFFIXES and not p.name.startswith("."):
            files.setdefault(p.stem, []).append(p)
    return files


def _find_image(files: dict[str, list[Path]], images_dir: Path, name: str, line: int, path: Path) -> Path:
    found = files.get(name, [])
    if not found:
        raise DatasetError(f"{path}: line {line}: no image file for {name!r} in {images_dir} (tried "
                           f"{'/'.join(SUFFIXES)}, any case); point IMAGES_DIR at ISIC_2019_Training_Input")
    if len(found) > 1:
        raise DatasetError(f"{path}: line {line}: {name!r} has {len(found)} image files in {images_dir} "
                           f"({', '.join(p.name for p in found)}); keep one")
    if found[0].is_symlink() or not found[0].is_file():
        what = "a symbolic link" if found[0].is_symlink() else "not a regular file (a folder?)"
        raise DatasetError(f"{path}: line {line}: {found[0]} is {what}; the conversion places the image files "
                           f"themselves into the dataset: put the file there instead")
    return found[0]


def convert(ground_truth: Path, images_dir: Path, out: Path, metadata: Path | None = None,
            how: str = "hard") -> Path:
    """Write the dataset contract into `out` (atomically: a temp dir renamed into place when complete).

    `how` places the images: ``hard`` links, ``copy`` or ``symlink`` (`contract.place_file`). An existing
    `out` is refused, so nothing of the user's is ever replaced or deleted.
    """
    if how not in LINK_MODES:
        raise DatasetError(f"how={how!r}: choose one of {list(LINK_MODES)}")
    out, ground_truth = Path(out), Path(ground_truth)
    if out.exists() or out.is_symlink():
        raise DatasetError(f"{out} exists: choose a new --out (the conversion never overwrites a directory)")
    gt = _read_ground_truth(ground_truth)
    images_dir = Path(images_dir).resolve()
    files = _image_files(images_dir)
    sources = [_find_image(files, images_dir, name, line, ground_truth) for line, name in gt["image"].items()]
    table = pd.DataFrame({"image_id": gt["image"].to_numpy(), "image": [f"images/{p.name}" for p in sources],
                          "source": "isic2019", "diagnosis": gt["diagnosis"].to_numpy()})
    if metadata is not None:
        meta = read_csv(Path(metadata), ("image",), ("age_approx", "anatom_site_general", "lesion_id", "sex"))
        check_unique(meta, ["image"], Path(metadata))
        lesion = meta.set_index("image").reindex(gt["image"])["lesion_id"].fillna("").to_numpy()
        table.insert(3, "group", np.where(lesion == "", table["image_id"], lesion))  # no lesion id: its own group
    annotations = pd.DataFrame({"image_id": table["image_id"], "rater": RATER, **{c: "" for c in CODES}})
    out.parent.mkdir(parents=True, exist_ok=True)
    clear_stale(out.parent, out.name)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(out.name), dir=out.parent))
    try:
        for src in sources:
            place_file(src, tmp / "images" / src.name, how)
        table.to_csv(tmp / "images.csv", index=False, lineterminator="\n")
        annotations.to_csv(tmp / "annotations.csv", index=False, lineterminator="\n")
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
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--copy", dest="how", action="store_const", const="copy", default="hard",
                     help="copy the images (default: hard links; use this across filesystems)")
    how.add_argument("--symlink", dest="how", action="store_const", const="symlink",
                     help="symlink the images (then pass --allow-outside to the tools that read the dataset)")
    args = parser.parse_args(argv)

    def body() -> None:
        out = convert(args.ground_truth, args.images_dir, args.out, args.metadata, args.how)
        table = pd.read_csv(out / "images.csv")
        print(f"{len(table)} images → {out} (BCC {int(table['diagnosis'].sum())}, "
              f"non-BCC {int((1 - table['diagnosis']).sum())})")
        if args.how == "symlink":
            print(f"the images are symbolic links to {args.images_dir}: pass --allow-outside to bcc.consensus "
                  f"and bcc.folds for this dataset")

    return run_command("bcc.data.isic", body, args.debug)


if __name__ == "__main__":
    sys.exit(main())
