"""Merge datasets in the dataset contract into one, to train on several at once.

    python -m bcc.data.merge data/synthetic data/isic2019 --out data/mixed [--names synth,isic] [--copy | --symlink]
    python -m bcc.train data=csv data.root=data/mixed

Every id gets its dataset's name (a folder name: letters, digits, ``.``, ``-``, ``_``) as prefix
(``<name>_<image_id>``, raters ``<name>:<rater>``, groups ``<name>:<group>``), so nothing collides and
the Dawid–Skene consensus keeps each dataset's raters apart.
Images are hard-linked to ``<out>/<name>/<path>``, masks to ``<out>/masks/<name>_<mask>``: no copy, and the
merged dataset holds its files, as the contract wants (``--copy`` copies, e.g. across filesystems;
``--symlink`` links, after which the tools reading it need ``--allow-outside``). Codes a dataset does not
annotate stay blank, so their pattern losses are masked out; ``diagnosis`` is kept where a dataset has it.
The same picture in two sources (byte-identical files) is said on stderr; ``bcc.folds`` keeps such copies in
one fold.
"""
from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bcc.core.cli import run_command, tool_parser
from bcc.core.io import refuse_existing, staged_folder
from bcc.core.log import get_logger
from bcc.data.contract import load_dataset
from bcc.data.errors import DatasetError, warn
from bcc.data.paths import check_how, place_file
from bcc.data.stamps import describe_duplicates, duplicate_images

log = get_logger(__name__)

NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
NEVER_REPLACED = "merging never overwrites a dataset"


def merge(roots: Sequence[Path], out: Path, names: Sequence[str] | None = None, how: str = "hard",
          allow_outside: bool = False) -> pd.DataFrame:
    """Write the merged dataset to `out` (atomically: `core.io.staged_folder`); returns images.csv.

    `how` places the files (`paths.place_file`); `allow_outside` lets a source's paths lead outside it
    (its files are then linked or copied into the merged dataset all the same).
    """
    check_how(how)
    roots = [Path(r).resolve() for r in roots]
    names = list(names) if names else [r.name for r in roots]
    if len(names) != len(roots) or len(set(names)) != len(names):
        raise DatasetError(f"--names {names}: give one distinct name per dataset ({len(roots)})")
    unfit = [n for n in names if not NAME.fullmatch(n)]
    if unfit:  # a name is a folder of the merged dataset and an id prefix: no '/', no '..'
        raise DatasetError(f"--names {unfit}: a name is letters, digits, '.', '-' or '_', not starting with '.'")
    out = Path(out)
    refuse_existing(out, "--out", NEVER_REPLACED)
    # every source valid before anything is written, and the sources left untouched (no decode stamp)
    sources = [load_dataset(root, allow_outside=allow_outside, write_stamp=False) for root in roots]
    with staged_folder(out, None, "--out", NEVER_REPLACED) as tmp:
        images, annotations = [], []
        for ds, name in zip(sources, names, strict=True):
            im = ds.images.copy()
            rels = [_placed(ds.root / rel, ds.root, allow_outside) for rel in im["image"]]
            for rel, src in zip(rels, ds.image_paths, strict=True):
                if not (tmp / name / rel).exists():  # two rows may share a file
                    place_file(src.resolve(), tmp / name / rel, how)
            im["image_id"] = name + "_" + im["image_id"]
            im["image"] = [f"{name}/{rel}" for rel in rels]
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
                    place_file(Path(path).resolve(), tmp / "masks" / f"{name}_{image_id}{suffix}.png", how)
        merged = pd.concat(images, ignore_index=True).fillna("")
        merged.to_csv(tmp / "images.csv", index=False)
        pd.concat(annotations, ignore_index=True).to_csv(tmp / "annotations.csv", index=False)
    return merged


def _placed(path: Path, root: Path, allow_outside: bool) -> str:
    """Where a source's file goes under its name in the merged dataset: its place inside the source (``..``
    and links resolved), or — allowed outside it — ``outside/<digest of its folder>/<file name>``."""
    target, base = path.resolve(), root.resolve()
    if target.is_relative_to(base):
        return target.relative_to(base).as_posix()
    return f"outside/{hashlib.sha256(str(target.parent).encode()).hexdigest()[:12]}/{target.name}"


def main(argv: Sequence[str] | None = None) -> int:
    ap = tool_parser("data.merge", __doc__.splitlines()[0])
    ap.add_argument("datasets", nargs="+", type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--names", help="comma-separated prefixes (default: the folder names)")
    how = ap.add_mutually_exclusive_group()
    how.add_argument("--copy", dest="how", action="store_const", const="copy", default="hard",
                     help="copy the files (default: hard links; use this across filesystems)")
    how.add_argument("--symlink", dest="how", action="store_const", const="symlink",
                     help="symlink the files (then pass --allow-outside to the tools that read the result)")
    ap.add_argument("--allow-outside", action="store_true",
                    help="accept source datasets whose paths lead outside them (their files are placed inside)")
    a = ap.parse_args(argv)

    def body() -> None:
        merged = merge(a.datasets, a.out, a.names.split(",") if a.names else None, a.how, a.allow_outside)
        log.info(f"{a.out}: {len(merged)} images from {len(a.datasets)} datasets")
        if duplicates := duplicate_images(a.out, merged):  # e.g. two datasets holding the same images
            warn(describe_duplicates(a.out, duplicates))

    return run_command("bcc.data.merge", body, a.debug)


if __name__ == "__main__":
    sys.exit(main())
