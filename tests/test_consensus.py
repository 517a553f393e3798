import re

import numpy as np
import pandas as pd
import pytest

from bcc.core.patterns import CODES
from bcc.data.consensus import dawid_skene, ensure_labels, fleiss_kappa_per_code, majority_vote, ratings_array


def simulate(n=3000, seed=0, blank=0.1):
    """Known truth, four raters with known per-code sensitivity/specificity, one worse, one leaving blanks."""
    rng = np.random.default_rng(seed)
    prior = np.array([0.35, 0.25, 0.2, 0.12, 0.15, 0.11, 0.3])
    truth = (rng.random((n, 7)) < prior).astype(float)
    sens = np.array([[0.92] * 7, [0.88] * 7, [0.90] * 7, [0.72] * 7]) + rng.uniform(-0.03, 0.03, (4, 7))
    spec = np.array([[0.95] * 7, [0.93] * 7, [0.90] * 7, [0.75] * 7]) + rng.uniform(-0.03, 0.03, (4, 7))
    p1 = np.where(truth[:, None, :] == 1, sens, 1 - spec)
    ratings = (rng.random((n, 4, 7)) < p1).astype(float)
    ratings[:, 2][rng.random((n, 7)) < blank] = np.nan
    return truth, ratings, sens, spec


def test_em_recovers_rater_quality_and_beats_majority_vote():
    truth, ratings, sens, spec = simulate()
    res = dawid_skene(ratings)
    assert res.converged
    assert np.abs(res.sensitivity - sens).max() < 0.05
    assert np.abs(res.specificity - spec).max() < 0.05
    em_acc = ((res.posterior >= 0.5) == truth).mean()
    mv = majority_vote(ratings)
    mv_acc = ((mv > 0.5) == truth).mean()  # ties count as absent
    assert (1 - em_acc) < 0.85 * (1 - mv_acc)  # EM makes clearly fewer errors than the vote


def test_em_handles_images_nobody_rated_and_stops_at_cap():
    _, ratings, _, _ = simulate(n=200)
    ratings[:5] = np.nan
    res = dawid_skene(ratings, tol=0.0, max_iter=3)
    assert res.iterations == 3 and not res.converged
    assert np.isfinite(res.posterior).all()
    # unrated images get the class prior
    np.testing.assert_allclose(res.posterior[:5], np.broadcast_to(res.prior, (5, 7)), atol=1e-6)
    ratings[:, :, 3] = np.nan  # a code nobody rated
    assert np.isfinite(dawid_skene(ratings).posterior).all()


def test_fleiss_kappa_perfect_and_chance():
    rng = np.random.default_rng(1)
    same = np.repeat(rng.integers(0, 2, (50, 1, 7)).astype(float), 4, axis=1)
    assert all(k == pytest.approx(1.0) for k in fleiss_kappa_per_code(same).values())
    noise = rng.integers(0, 2, (4000, 4, 7)).astype(float)
    assert all(abs(k) < 0.05 for k in fleiss_kappa_per_code(noise).values())


def test_ratings_array_places_blanks_as_nan():
    ann = pd.DataFrame({"image_id": ["a", "b", "a"], "rater": ["r1", "r1", "r2"],
                        **{c: ["1", "", "0"] for c in CODES}})
    arr, raters = ratings_array(ann, pd.Series(["a", "b"]))
    assert raters == ["r1", "r2"] and arr.shape == (2, 2, 7)
    assert arr[0, 0, 0] == 1 and arr[0, 1, 0] == 0 and np.isnan(arr[1, 0, 0]) and np.isnan(arr[1, 1, 0])


def test_labels_file_rule_diagnosis_override_and_reuse(tmp_path):
    from tests.helpers.datasets import make_dataset

    root = make_dataset(tmp_path / "ds", n=8, raters=3)
    images = pd.read_csv(root / "images.csv")
    images["diagnosis"] = ["1", "", "", "", "", "", "", "0"]
    images.to_csv(root / "images.csv", index=False)
    labels = ensure_labels(root)
    assert list(labels.columns) == ["image_id", *CODES, *[f"p_{c}" for c in CODES], "bcc"]
    assert labels.loc[0, "bcc"] == 1 and labels.loc[7, "bcc"] == 0
    from bcc.core.patterns import clinical_rule
    rule = clinical_rule(labels[list(CODES)].to_numpy())
    assert (labels["bcc"].to_numpy()[1:7] == rule[1:7]).all()
    mtime = (root / "labels.csv").stat().st_mtime_ns
    ensure_labels(root)
    assert (root / "labels.csv").stat().st_mtime_ns == mtime  # inputs unchanged → reused
    (root / "annotations.csv").write_text((root / "annotations.csv").read_text().replace(",0,", ",1,", 1))
    ensure_labels(root)
    assert (root / "labels.csv").stat().st_mtime_ns != mtime


@pytest.fixture(scope="module")
def synthetic_paper_size(tmp_path_factory):
    from bcc.data.synthetic import generate

    return generate(tmp_path_factory.mktemp("syn") / "ds", n=1559, size=32, seed=0, progress=False)


def test_on_the_synthetic_set_em_beats_majority_vote_and_recovers_raters(synthetic_paper_size):
    root = synthetic_paper_size
    labels = ensure_labels(root)
    truth = pd.read_csv(root / "truth.csv", dtype={"image_id": str}).set_index("image_id").loc[labels["image_id"]]
    em_errors = (labels[list(CODES)].to_numpy() != truth[list(CODES)].to_numpy()).sum()
    from bcc.data.contract import load_dataset

    ratings, _ = ratings_array(load_dataset(root).annotations, labels["image_id"])
    mv_errors = ((majority_vote(ratings) > 0.5) != truth[list(CODES)].to_numpy()).sum()
    assert em_errors < mv_errors
    estimated = pd.read_csv(root / "rater_quality.csv").set_index(["rater", "code"])
    simulated = pd.read_csv(root / "raters.csv").set_index(["rater", "code"]).loc[estimated.index]
    assert (estimated - simulated).abs().max().max() <= 0.05


def test_unrated_codes_stay_blank_and_unlabelled_images_are_an_error(tmp_path):
    from bcc.data.contract import DatasetError
    from tests.helpers.datasets import make_dataset

    root = make_dataset(tmp_path / "ds", n=6, raters=2)
    ann = pd.read_csv(root / "annotations.csv", dtype=str, keep_default_na=False)
    ann.loc[ann.image_id == "im1", ["MG", "SW"]] = ""
    ann.to_csv(root / "annotations.csv", index=False)
    labels = ensure_labels(root)
    row = labels.set_index("image_id").loc["im1"]
    assert pd.isna(row["MG"]) and pd.isna(row["p_SW"]) and not pd.isna(row["PN"])
    ann.loc[ann.image_id == "im2", list(CODES)] = ""
    ann.to_csv(root / "annotations.csv", index=False)
    with pytest.raises(DatasetError, match=r"images.csv: line 4: image 'im2' has every code blank in "
                                           r"annotations.csv and no diagnosis"):
        ensure_labels(root)


def test_raters_with_too_few_ratings_are_undefined_and_said_so(tmp_path, capsys):
    """A rater with one rated image, or none, gets NaN statistics with a note, a warning and '–' in the
    report; a code whose Fleiss kappa cannot be computed says why; the other raters keep their numbers."""
    from bcc.data.consensus import MIN_RATINGS, RaterWarning, kappa_undefined, main
    from tests.helpers.datasets import make_dataset

    root = make_dataset(tmp_path / "ds", n=30, raters=3)
    ann = pd.read_csv(root / "annotations.csv", dtype=str, keep_default_na=False)
    extra = pd.DataFrame([{"image_id": "im0", "rater": "lone", **{c: "1" for c in CODES}},
                          {"image_id": "im1", "rater": "silent", **{c: "" for c in CODES}}])
    ann = pd.concat([ann, extra])
    ann.loc[ann.rater.isin(["r1", "r2"]), "SW"] = ""  # one rater left for SW: no kappa
    ann.to_csv(root / "annotations.csv", index=False)
    with pytest.warns(RaterWarning, match=r"rater 'lone': sensitivity/specificity undefined for every code "
                                          r"\(1 rated image, fewer than 2\)"):
        ensure_labels(root)
    q = pd.read_csv(root / "rater_quality.csv", keep_default_na=False, na_values=[""]).set_index(["rater", "code"])
    assert list(q.columns) == ["rated", "sensitivity", "specificity", "note"]
    assert q.loc["lone", ["sensitivity", "specificity"]].isna().all().all() and (q.loc["lone", "rated"] == 1).all()
    assert (q.loc["silent", "note"] == "no ratings").all() and (q.loc["silent", "rated"] == 0).all()
    assert q.loc[["r0", "r1", "r2"]].drop(index="SW", level="code")[["sensitivity", "specificity"]].notna().all().all()
    assert q.loc[("r1", "SW"), "note"] == "no ratings" and q.loc[("r0", "SW"), "rated"] == 30
    ratings, _ = ratings_array(ann, pd.Series([f"im{i}" for i in range(30)]))
    kappa = fleiss_kappa_per_code(ratings)
    assert np.isnan(kappa["SW"]) and all(np.isfinite(kappa[c]) for c in CODES if c != "SW")  # lone/silent left out
    assert kappa_undefined(ratings) == {"SW": f"fewer than 2 raters with {MIN_RATINGS}+ ratings"}

    capsys.readouterr()
    assert main([str(root)]) == 0
    out, err = capsys.readouterr()
    assert "warning: Fleiss kappa undefined for SW: fewer than 2 raters with 2+ ratings" in err
    assert "warning: rater 'silent': sensitivity/specificity undefined for every code (no ratings)" in err
    assert "– = undefined:" in out and "Fleiss kappa undefined for SW" in out
    lone = next(line for line in out.splitlines() if line.startswith("lone"))
    assert lone.split()[1:] == ["–"] * 14
    assert not re.search(r"\bnan\b(?! in rater_quality)", out, re.IGNORECASE)  # "–", never a bare NaN


def test_kappa_of_identical_ratings_is_undefined_not_nan_silently():
    from bcc.data.consensus import kappa_undefined

    zeros = np.zeros((20, 3, 7))
    assert np.isnan(fleiss_kappa_per_code(zeros)["PN"])
    assert kappa_undefined(zeros)["PN"].startswith("every rating is the same")
