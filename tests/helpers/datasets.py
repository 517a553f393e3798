"""Tiny datasets that follow the dataset contract, written by the tests themselves."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from bcc.core.patterns import CODES


def make_dataset(root: Path, n: int = 6, raters: int = 3) -> Path:
    """A tiny valid dataset: n RGB images, every rater rates every code."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    rows, ann = [], []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (16, 20, 3), dtype=np.uint8)).save(root / f"images/im{i}.png")
        rows.append({"image_id": f"im{i}", "image": f"images/im{i}.png", "source": "c1"})
        for r in range(raters):
            ann.append({"image_id": f"im{i}", "rater": f"r{r}", **{c: int(rng.random() < 0.3) for c in CODES}})
    pd.DataFrame(rows).to_csv(root / "images.csv", index=False)
    pd.DataFrame(ann).to_csv(root / "annotations.csv", index=False)
    return root
