"""The one join of a dataset's tables: ``images.csv ⋈ labels.csv [⋈ splits.csv]``, one row per image.

Training, external scoring and the int8 export check all read a dataset through :func:`read_table`, so
``image_id`` is text everywhere ("0042" stays "0042") and a table that does not cover ``images.csv``
is the same clear error everywhere.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bcc.data.cache import decode_digest, decoded_images
from bcc.data.contract import DatasetError, load_image_table
from bcc.data.images import Preprocess


def read_table(root: str | Path, splits: bool = True, allow_outside: bool = False) -> pd.DataFrame:
    """images.csv ⋈ labels.csv (⋈ splits.csv when `splits`), in images.csv order.

    ``labels.csv`` comes from ``bcc.data.consensus``, ``splits.csv`` from ``bcc.data.folds``. Image paths
    must lie inside `root` unless `allow_outside` (the contract's rule).
    """
    root = Path(root)
    table = load_image_table(root, check_files=False, allow_outside=allow_outside)
    n = len(table)
    names = ["labels.csv"] + (["splits.csv"] if splits else [])
    for name in names:
        path = root / name
        if not path.is_file():
            tool = "consensus" if name == "labels.csv" else "folds"
            raise DatasetError(f"{path}: missing; `python -m bcc.{tool} {root}` writes it")
        table = table.merge(pd.read_csv(path, dtype={"image_id": str}), on="image_id", how="inner",
                            validate="one_to_one")
    if len(table) != n:
        raise DatasetError(f"{root}: {' / '.join(names)} do not cover images.csv ({len(table)} images joined); "
                           f"delete them to have them rebuilt")
    return table.reset_index(drop=True)


def aspects(table: pd.DataFrame) -> list[float | None]:
    """images.csv's ``aspect`` per row (None where blank or without the column): what a squeezed copy's
    picture looked like, for the aspect-preserving crop (``bcc.data.images.view_box``)."""
    if "aspect" not in table.columns:
        return [None] * len(table)
    values = pd.to_numeric(table["aspect"].replace("", None), errors="coerce")
    return [None if pd.isna(v) else float(v) for v in values]


def table_images(root: str | Path, table: pd.DataFrame, preprocess, allow_outside: bool = False,
                 disk_cache: bool = True) -> tuple[np.ndarray, str]:
    """The network's view of every row of `table` (uint8 (N, S, S, 3), ``bcc.data.cache``) and the digest that
    names that array (``decode_digest``): what training and evaluation key the network's activations by."""
    root = Path(root)
    rel, asp = list(table["image"]), aspects(table)
    images = decoded_images(root, rel, preprocess, disk_cache=disk_cache, allow_outside=allow_outside, aspects=asp)
    return images, decode_digest(root.resolve(), rel, Preprocess.of(preprocess), asp)
