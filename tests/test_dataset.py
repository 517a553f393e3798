"""Each malformed input stops with a clear error naming file and line, and writes nothing."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bcc.data.consensus import ensure_labels
from bcc.data.contract import DatasetError, load_dataset
from tests.helpers.datasets import make_dataset


@pytest.fixture
def ds(tmp_path):
    return make_dataset(tmp_path / "ds")


def edit_csv(path: Path, fn):
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    fn(df).to_csv(path, index=False)


def test_valid_dataset_loads(ds):
    d = load_dataset(ds)
    assert len(d.images) == 6 and len(d.annotations) == 18 and d.masks == {}


def _set(df, row, col, value):
    df.loc[row, col] = value
    return df


CASES = {
    "missing column": ("images.csv", lambda df: df.drop(columns=["source"]), r"missing column.*source"),
    "unknown code": ("annotations.csv", lambda df: df.assign(XX="0"), r"unknown column.*XX"),
    "bad value": ("annotations.csv", lambda df: _set(df, 4, "MG", "yes"), r"column MG, line 6: value 'yes'"),
    "duplicate image_id": ("images.csv", lambda df: pd.concat([df, df.iloc[[2]]]), r"duplicate image_id.*im2.*lines 4, 8"),
    "duplicate rating": ("annotations.csv", lambda df: pd.concat([df, df.iloc[[0]]]), r"duplicate image_id\+rater"),
    "unknown image": ("annotations.csv", lambda df: _set(df, 3, "image_id", "ghost"), r"line 5: image_id 'ghost' is not"),
    "image without annotation": ("annotations.csv", lambda df: df[df.image_id != "im5"], r"im5.*has no row"),
    "missing image file": ("images.csv", lambda df: _set(df, 1, "image", "images/nope.png"), r"line 3: file .*nope.png does not exist"),
}


@pytest.mark.parametrize("case", CASES)
def test_malformed_csv_is_a_clear_error_and_writes_nothing(ds, case):
    name, fn, pattern = CASES[case]
    edit_csv(ds / name, fn)
    before = sorted(p.name for p in ds.iterdir())
    with pytest.raises(DatasetError, match=pattern) as err:
        ensure_labels(ds)
    assert name in str(err.value) or "images.csv" in str(err.value)
    assert sorted(p.name for p in ds.iterdir()) == before


def test_zero_byte_and_corrupt_images(ds):
    (ds / "images/im1.png").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"line 3: .*im1.png is empty"):
        load_dataset(ds)
    (ds / "images/im1.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError, match=r"line 3: cannot read image .*im1.png"):
        load_dataset(ds)


def test_empty_csv_wrong_delimiter_and_encoding(ds):
    (ds / "annotations.csv").write_text("")
    with pytest.raises(DatasetError, match="annotations.csv: file is empty"):
        load_dataset(ds)
    df = pd.read_csv(ds / "images.csv")
    df.to_csv(ds / "images.csv", sep=";", index=False)
    with pytest.raises(DatasetError, match=r"images.csv: line 1: it looks ';'-separated"):
        load_dataset(ds)
    df.assign(source="Cádiz").to_csv(ds / "images.csv", index=False, encoding="latin-1")
    with pytest.raises(DatasetError, match=r"images.csv: not UTF-8.*re-save"):
        load_dataset(ds)


def test_mask_size_must_match_image(ds):
    (ds / "masks").mkdir()
    Image.fromarray(np.zeros((16, 20), np.uint8)).save(ds / "masks/im0_AT.png")
    assert load_dataset(ds).masks == {"im0": {"AT": ds / "masks/im0_AT.png"}}
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(ds / "masks/im2.png")
    with pytest.raises(DatasetError, match=r"im2.png: mask is 10x10 but its image is 20x16"):
        load_dataset(ds)
