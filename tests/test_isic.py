"""ISIC 2019 adapter on a small fixture in the official column layout."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bcc.consensus import ensure_labels
from bcc.data.dataset import DatasetError, load_dataset
from bcc.data.isic import DIAGNOSES, convert, main
from bcc.folds import ensure_splits
from bcc.patterns import CODES


@pytest.fixture
def isic(tmp_path):
    rng = np.random.default_rng(0)
    images = tmp_path / "ISIC_2019_Training_Input"
    images.mkdir()
    rows, meta = [], []
    for i in range(20):
        name = f"ISIC_{i:07d}"
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(images / f"{name}.jpg")
        dx = DIAGNOSES[2] if i % 3 == 0 else DIAGNOSES[i % 2]  # BCC, MEL or NV
        rows.append({"image": name, **{d: float(d == dx) for d in DIAGNOSES}})
        meta.append({"image": name, "age_approx": 50.0, "anatom_site_general": "head/neck",
                     "lesion_id": f"IL_{i // 2:07d}" if i < 16 else "", "sex": "female"})
    pd.DataFrame(rows).to_csv(tmp_path / "ISIC_2019_Training_GroundTruth.csv", index=False)
    pd.DataFrame(meta).to_csv(tmp_path / "ISIC_2019_Training_Metadata.csv", index=False)
    return tmp_path


def test_converted_set_follows_the_contract_and_labels_come_from_diagnosis(isic, capsys):
    out = isic / "data" / "isic2019"
    main([str(isic / "ISIC_2019_Training_GroundTruth.csv"), str(isic / "ISIC_2019_Training_Input"),
          "--out", str(out), "--metadata", str(isic / "ISIC_2019_Training_Metadata.csv")])
    assert "20 images" in capsys.readouterr().out
    ds = load_dataset(out)
    assert ds.images["diagnosis"].astype(int).sum() == 7  # i % 3 == 0 for i < 20
    labels = ensure_labels(out)
    assert labels[list(CODES)].isna().all().all()
    assert labels["bcc"].tolist() == [int(i % 3 == 0) for i in range(20)]
    splits = ensure_splits(out, k=2).merge(ds.images, on="image_id")
    assert splits.groupby("group")["fold"].nunique().max() == 1


def test_bad_one_hot_row_and_missing_image_are_clear_errors(isic):
    gt_path = isic / "ISIC_2019_Training_GroundTruth.csv"
    gt = pd.read_csv(gt_path)
    gt.loc[4, "NV"] = 1.0
    gt.loc[4, "MEL"] = 1.0
    gt.to_csv(gt_path, index=False)
    with pytest.raises(DatasetError, match=r"line 6: expected exactly one 1.0"):
        convert(gt_path, isic / "ISIC_2019_Training_Input", isic / "out")
    gt.loc[4, "MEL"] = 0.0
    gt.to_csv(gt_path, index=False)
    (isic / "ISIC_2019_Training_Input" / "ISIC_0000007.jpg").unlink()
    with pytest.raises(DatasetError, match=r"no image file for 'ISIC_0000007'"):
        convert(gt_path, isic / "ISIC_2019_Training_Input", isic / "out")
    assert not (isic / "out").exists() and not list(isic.glob(".out.*"))


@pytest.mark.slow
def test_experiment_external_scores_each_fold_model_on_the_converted_set(isic, data_dir, tmp_path):
    """experiment=external: the diagnosis head of a trained model on an ISIC-layout set; the metrics match
    scikit-learn on the written predictions, and pattern codes (unlabelled there) stay out."""
    from sklearn.metrics import roc_auc_score

    from bcc.train import run

    out = isic / "data" / "isic2019"
    main([str(isic / "ISIC_2019_Training_GroundTruth.csv"), str(isic / "ISIC_2019_Training_Input"), "--out", str(out)])
    trained = tmp_path / "trained"
    run(["experiment=smoke", f"paths.data_dir={data_dir}", f"paths.output_dir={trained}", "stage=0", "fold=1",
         "logger=csv"])
    res = run(["experiment=external", f"external.source={trained}", "external.stage=0", f"data.root={out}",
               f"paths.output_dir={tmp_path / 'external'}"])
    assert list(res) == [1]
    job = tmp_path / "external" / "mobilenet" / "fold1" / "stage0"
    preds = pd.read_csv(job / "predictions.csv")
    assert len(preds) == 20 and preds[[f"y_{c}" for c in CODES]].isna().all().all()
    assert res[1]["test"]["bcc"]["auroc"] == pytest.approx(roc_auc_score(preds["y_bcc"], preds["p_bcc"]), abs=1e-5)
    assert res[1]["test"]["bcc"]["recall"] == pytest.approx(
        ((preds["p_bcc"] >= 0.5) & (preds["y_bcc"] == 1)).sum() / 7, abs=1e-6)
    assert set(res[1]["test"]) == {"bcc", "rule"}  # no pattern metrics without pattern labels; the rule vs dx
    with pytest.raises(FileNotFoundError, match="stage3/best.ckpt"):
        run(["experiment=external", f"external.source={trained}", f"data.root={out}",
             f"paths.output_dir={tmp_path / 'x'}"])
