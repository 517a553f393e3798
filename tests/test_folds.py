import numpy as np
import pandas as pd
import pytest

from bcc.data.contract import DatasetError
from bcc.data.folds import STRATA, assign_folds, fold_table


def random_labels(n=500, seed=0):
    rng = np.random.default_rng(seed)
    p = np.array([0.35, 0.25, 0.2, 0.12, 0.15, 0.11, 0.3, 0.5])
    return pd.DataFrame((rng.random((n, len(STRATA))) < p).astype(int), columns=STRATA)


def test_folds_are_balanced_and_deterministic():
    labels = random_labels()
    folds = assign_folds(labels, k=5, seed=0)
    assert np.array_equal(folds, assign_folds(labels, k=5, seed=0))
    assert not np.array_equal(folds, assign_folds(labels, k=5, seed=1))
    table = fold_table(labels, folds).drop(index="total")
    assert table["images"].max() - table["images"].min() <= 2
    # each stratum's positives spread within ±2 of an even split
    expected = labels[STRATA].sum() / 5
    assert (table[STRATA] - expected).abs().max().max() <= 2


def test_groups_never_span_two_folds():
    labels = random_labels(300)
    groups = pd.Series(np.arange(300) // 3)
    folds = assign_folds(labels, k=5, seed=0, groups=groups)
    assert pd.DataFrame({"g": groups, "f": folds}).groupby("g")["f"].nunique().max() == 1
    assert len(set(folds)) == 5


def test_rare_code_is_a_clear_error():
    labels = random_labels(100)
    labels["SW"] = 0
    labels.loc[:2, "SW"] = 1
    with pytest.raises(DatasetError, match=r"SW \(3\).*lower --k"):
        assign_folds(labels, k=5)


def test_codes_nobody_labelled_are_left_out_of_the_stratification():
    labels = random_labels(200).astype(float)
    labels[["PN", "U", "ON", "MG", "ML", "SW", "AT"]] = np.nan  # e.g. ISIC 2019: diagnosis only
    folds = assign_folds(labels, k=5, seed=0)
    per_fold = pd.Series(labels["bcc"].to_numpy()).groupby(folds).sum()
    assert per_fold.max() - per_fold.min() <= 1


def test_the_same_picture_under_two_ids_lands_in_one_fold(data_dir, tmp_path):
    """Two rows naming one file, and a byte-identical copy under another id (and name), are found by the
    contract and kept in one fold with each other (and with the copy's group), so a picture is never in a
    training fold and the test fold at once; a dataset without copies keeps its folds."""
    import shutil

    from bcc.data.contract import load_dataset
    from bcc.data.folds import ensure_splits

    ds = tmp_path / "ds"
    shutil.copytree(data_dir / "synthetic-smoke", ds, ignore=shutil.ignore_patterns(".cache"))
    before = pd.read_csv(ds / "splits.csv", dtype={"image_id": str}).set_index("image_id")["fold"]
    images = pd.read_csv(ds / "images.csv", dtype=str)
    # syn_00010 and syn_00020 were assigned different folds; make them the same file, and 30 a copy of 40
    a, b = next((x, y) for x in before.index for y in before.index if before[x] != before[y])
    images.loc[images["image_id"] == b, "image"] = images.loc[images["image_id"] == a, "image"].iloc[0]
    c, d = [i for i in before.index if i not in (a, b)][:2]
    shutil.copy(ds / "images" / f"{d}.png", ds / "images" / "copy.png")
    images.loc[images["image_id"] == c, "image"] = "images/copy.png"
    images.to_csv(ds / "images.csv", index=False)
    assert sorted(map(sorted, load_dataset(ds).duplicates)) == sorted([sorted([a, b]), sorted([c, d])])
    with pytest.warns(UserWarning, match=r"2 picture\(s\) appear under more than one image_id"):
        folds = ensure_splits(ds).set_index("image_id")["fold"]
    assert folds[a] == folds[b] and folds[c] == folds[d]
    assert ensure_splits(data_dir / "synthetic-smoke").set_index("image_id")["fold"].equals(before)
