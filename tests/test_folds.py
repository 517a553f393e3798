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
