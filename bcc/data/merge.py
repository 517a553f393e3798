"""Merge datasets in the dataset contract into one, to train on several at once.

    python -m bcc.data.merge data/synthetic data/isic2019 --out data/mixed [--names synth,isic]
    python -m bcc.train data=csv data.root=data/mixed

Every id gets its dataset's name as prefix (``<name>_<image_id>``, raters ``<name>:<rater>``, groups
``<name>:<group>``), so nothing collides and the Dawid–Skene consensus keeps each dataset's raters apart.
Images and masks are symlinked (``<out>/<name>/...``), not copied. Codes a dataset does not annotate stay
blank, so their pattern losses are masked out; ``diagnosis`` is kept where a dataset has it.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bcc.core.cli import run_command, tool_parser
from bcc.data.contract import DatasetError, load_dataset


def merge(roots: Sequence[Path], out: Path, names: Sequence[str] | None = None) -> pd.DataFrame:
    """Write the merged dataset to `out` (atomically: a temp folder renamed at the end); returns images.csv."""
    roots = [Path(r).resolve() for r in roots]
    names = list(names) if names else [r.name for r in roots]
    if len(names) != len(roots) or len(set(names)) != len(names):
        raise DatasetError(f"--names {names}: give one distinct name per dataset ({len(roots)})")
    out = Path(out)
    if out.exists():
        raise DatasetError(f"{out} exists: choose a new --out (merging never overwrites a dataset)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        images, annotations = [], []
        (tmp / "masks").mkdir()
        for root, name in zip(roots, names):
            ds = load_dataset(root)
            (tmp / name).symlink_to(root, target_is_directory=True)
            im = ds.images.copy()
            im["image_id"] = name + "_" + im["image_id"]
            im["image"] = name + "/" + im["image"]
            if "group" in im:
                im["group"] = im["group"].where(im["group"].eq(""), name + ":" + im["group"])
            images.append(im)
            an = ds.annotations.copy()
            an["image_id"] = name + "_" + an["image_id"]
            an["rater"] = name + ":" + an["rater"]
            annotations.append(an)
            for image_id, masks in ds.masks.items():
                for code, path in masks.items():
                    suffix = "" if code == "all" else f"_{code}"
                    (tmp / "masks" / f"{name}_{image_id}{suffix}.png").symlink_to(Path(path).resolve())
        merged = pd.concat(images, ignore_index=True).fillna("")
        merged.to_csv(tmp / "images.csv", index=False)
        pd.concat(annotations, ignore_index=True).to_csv(tmp / "annotations.csv", index=False)
        if not any((tmp / "masks").iterdir()):
            (tmp / "masks").rmdir()
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return merged


def main(argv: Sequence[str] | None = None) -> int:
    ap = tool_parser("data.merge", __doc__.splitlines()[0])
    ap.add_argument("datasets", nargs="+", type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--names", help="comma-separated prefixes (default: the folder names)")
    a = ap.parse_args(argv)

    def body() -> None:
        merged = merge(a.datasets, a.out, a.names.split(",") if a.names else None)
        print(f"{a.out}: {len(merged)} images from {len(a.datasets)} datasets")

    return run_command("bcc.data.merge", body, a.debug)


if __name__ == "__main__":
    sys.exit(main())
