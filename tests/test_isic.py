"""ISIC 2019 adapter on a small fixture in the official column layout."""
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bcc.core.patterns import CODES
from bcc.data.consensus import RaterWarning, ensure_labels
from bcc.data.contract import DatasetError, load_dataset
from bcc.data.folds import ensure_splits
from bcc.data.isic import DIAGNOSES, convert, main


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
    with pytest.warns(RaterWarning, match=r"PN, U, ON, MG, ML, SW, AT: rated by nobody"):
        labels = ensure_labels(out)  # the placeholder rater rates no code: said, not hidden
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
def test_experiment_external_scores_each_fold_model_and_their_ensemble(isic, data_dir, tmp_path, capsys):
    """experiment=external (the evaluation command): each fold model's diagnosis head on an ISIC-layout set and
    their ensemble; the metrics match scikit-learn on the written predictions, and pattern codes (unlabelled
    there) stay out. The training command refuses it: it trains nothing."""
    from sklearn.metrics import roc_auc_score

    from bcc.cli.evaluate import main as evaluate_main
    from bcc.cli.train import main as train_main
    from bcc.training.protocol import run

    out = isic / "data" / "isic2019"
    main([str(isic / "ISIC_2019_Training_GroundTruth.csv"), str(isic / "ISIC_2019_Training_Input"), "--out", str(out)])
    trained = tmp_path / "trained"
    for fold in (0, 1):
        run(["experiment=smoke", f"paths.data_dir={data_dir}", f"paths.output_dir={trained}", "stage=0",
             f"fold={fold}", "logger=csv"])
    scored = tmp_path / "external"
    assert evaluate_main(["experiment=external", f"external.source={trained}", "external.stage=0", f"data.root={out}",
                          f"paths.output_dir={scored}", "eval.stage=0", "eval.k=2", "wandb.enabled=false",
                          "eval.complexity=false", "eval.linear_probe=false"]) == 0
    said = capsys.readouterr().out
    assert sorted(p.name for p in (scored / "mobilenet").iterdir()) == ["fold0", "fold1"]
    job = scored / "mobilenet" / "fold1" / "stage0"
    metrics = json.loads((job / "metrics.json").read_text())
    preds = pd.read_csv(job / "predictions.csv")
    assert len(preds) == 20 and preds[[f"y_{c}" for c in CODES]].isna().all().all()
    assert metrics["test"]["bcc"]["auroc"] == pytest.approx(roc_auc_score(preds["y_bcc"], preds["p_bcc"]), abs=1e-5)
    assert metrics["test"]["bcc"]["recall"] == pytest.approx(
        ((preds["p_bcc"] >= 0.5) & (preds["y_bcc"] == 1)).sum() / 7, abs=1e-6)
    assert set(metrics["test"]) == {"bcc", "rule"}  # no pattern metrics without pattern labels; the rule vs dx
    both = pd.concat([pd.read_csv(scored / "mobilenet" / f"fold{k}" / "stage0" / "predictions.csv") for k in (0, 1)])
    mean = both.groupby("image_id")[["y_bcc", "p_bcc"]].mean()
    ensemble = pd.read_csv(scored / "report-stage0" / "ensemble.csv").set_index("model")
    assert ensemble.loc["fold ensemble (mean p)", "auroc"] == pytest.approx(roc_auc_score(mean["y_bcc"], mean["p_bcc"]))
    assert "fold ensemble" in said and "## Each fold model and their ensemble" in (scored / "report-stage0" / "report.md").read_text()
    assert evaluate_main(["experiment=external", f"external.source={trained}", f"data.root={out}",
                          f"paths.output_dir={tmp_path / 'x'}", "wandb.enabled=false"]) == 2
    assert "stage3/best.ckpt" in capsys.readouterr().err
    assert train_main(["experiment=external", f"external.source={trained}", f"data.root={out}"]) == 2
    assert "trains nothing" in capsys.readouterr().err


def test_merged_synthetic_and_isic_mask_the_pattern_loss_where_labels_are_missing(isic, data_dir, tmp_path):
    import torch

    from bcc.data.merge import main as merge_main
    from bcc.models.losses import MultitaskFocalLoss
    from bcc.training.datamodule import BCCDataModule

    isic_set = isic / "data" / "isic2019"
    main([str(isic / "ISIC_2019_Training_GroundTruth.csv"), str(isic / "ISIC_2019_Training_Input"),
          "--out", str(isic_set), "--metadata", str(isic / "ISIC_2019_Training_Metadata.csv")])
    mixed = tmp_path / "mixed"
    assert merge_main([str(data_dir / "synthetic-smoke"), str(isic_set), "--out", str(mixed),
                       "--names", "synth,isic"]) == 0
    assert merge_main([str(isic_set), str(isic_set), "--out", str(tmp_path / "m2")]) == 2  # same names
    ds = load_dataset(mixed)
    assert len(ds.images) == 120 and ds.images["image_id"].is_unique
    assert not any(p.is_symlink() for p in mixed.rglob("*"))  # hard links: the merged set holds its files
    assert (mixed / ds.images["image"].iloc[0]).samefile(data_dir / "synthetic-smoke" / "images" / "syn_00000.png")
    assert len(ds.masks) == len(load_dataset(data_dir / "synthetic-smoke").masks)
    labels = ensure_labels(mixed).set_index("image_id")
    is_isic = labels.index.str.startswith("isic_")
    assert labels.loc[is_isic, list(CODES)].isna().all().all() and labels.loc[~is_isic, list(CODES)].notna().all().all()
    assert set(pd.read_csv(mixed / "rater_quality.csv")["rater"]) >= {"synth:derm_1", "isic:isic2019"}
    ensure_splits(mixed, k=5, seed=0)
    dm = BCCDataModule(root=mixed, fold=0, image_size=32, batch_size=8)
    dm.setup("fit")
    rows = dm.rows("train")
    targets = torch.as_tensor(dm.targets(rows))
    isic_rows = torch.tensor(dm.table.loc[rows, "image_id"].str.startswith("isic_").to_numpy())
    logits = torch.randn(len(rows), 8, requires_grad=True)
    loss, _ = MultitaskFocalLoss([0.5] * 8, 2.0)(logits, targets)
    loss.backward()
    assert torch.isfinite(loss) and isic_rows.any()
    assert (logits.grad[isic_rows, 1:] == 0).all()  # no pattern gradient from images without pattern labels
    assert (logits.grad[isic_rows, 0] != 0).all()   # the diagnosis still trains on them


def _args(isic, out, *extra):
    return [str(isic / "ISIC_2019_Training_GroundTruth.csv"), str(isic / "ISIC_2019_Training_Input"),
            "--out", str(out), *extra]


def test_an_existing_out_is_refused_and_left_as_it_was(isic, capsys):
    out = isic / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(_args(isic, out)) == 2
    assert "mine exists: choose a new --out" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"
    assert not list(isic.glob(".mine.*"))


def test_images_are_hard_linked_by_default_and_symlinks_need_allow_outside(isic, capsys):
    from bcc.data.consensus import main as consensus_main
    from bcc.data.folds import main as folds_main

    source = isic / "ISIC_2019_Training_Input"
    (source / "ISIC_0000003.jpg").rename(source / "ISIC_0000003.JPG")  # the suffix in any case
    assert main(_args(isic, isic / "hard")) == 0
    linked = isic / "hard" / "images" / "ISIC_0000003.JPG"
    assert not linked.is_symlink() and linked.samefile(source / "ISIC_0000003.JPG")
    assert consensus_main([str(isic / "hard")]) == 0
    assert main(_args(isic, isic / "copied", "--copy")) == 0
    assert not (isic / "copied" / "images" / "ISIC_0000003.JPG").samefile(source / "ISIC_0000003.JPG")
    assert main(_args(isic, isic / "soft", "--symlink")) == 0
    assert "pass --allow-outside" in capsys.readouterr().out
    assert (isic / "soft" / "images" / "ISIC_0000000.jpg").is_symlink()
    assert folds_main([str(isic / "soft"), "--k", "2"]) == 2
    assert "leads through a symbolic link" in capsys.readouterr().err
    assert folds_main([str(isic / "soft"), "--k", "2", "--allow-outside"]) == 0
    (source / "ISIC_0000005.png").write_bytes((source / "ISIC_0000005.jpg").read_bytes())
    with pytest.raises(DatasetError, match=r"line 7: 'ISIC_0000005' has 2 image files .*ISIC_0000005.jpg, "
                                           r"ISIC_0000005.png"):
        convert(isic / "ISIC_2019_Training_GroundTruth.csv", source, isic / "two")


def test_a_failed_hard_link_is_a_clear_error_and_leaves_nothing(isic, monkeypatch):
    from bcc.data import paths

    def cross_device(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(paths.os, "link", cross_device)
    with pytest.raises(DatasetError, match=r"cannot hard-link it .*cross-device.*pass --copy .*or --symlink"):
        convert(isic / "ISIC_2019_Training_GroundTruth.csv", isic / "ISIC_2019_Training_Input", isic / "out")
    assert not (isic / "out").exists() and not list(isic.glob(".out.*"))


def test_merge_links_every_file_inside_and_reads_outside_sources_only_when_allowed(tmp_path, capsys):
    from bcc.data.consensus import main as consensus_main
    from bcc.data.merge import main as merge_main
    from tests.helpers.datasets import make_dataset

    a, b = make_dataset(tmp_path / "a"), make_dataset(tmp_path / "b")
    (tmp_path / "elsewhere").mkdir()
    (b / "images/im1.png").rename(tmp_path / "elsewhere/im1.png")
    (b / "images/im1.png").symlink_to(tmp_path / "elsewhere/im1.png")  # b reads a file outside itself
    assert merge_main([str(a), str(b), "--out", str(tmp_path / "m")]) == 2
    assert "b/images.csv: line 3: image path 'images/im1.png' leads through a symbolic link" in capsys.readouterr().err
    assert not (tmp_path / "m").exists() and not (a / ".cache").exists()  # sources left untouched
    assert merge_main([str(a), str(b), "--out", str(tmp_path / "m"), "--allow-outside"]) == 0
    merged = load_dataset(tmp_path / "m")  # self-contained: no allow_outside needed
    outside = merged.image_path("b_im1")
    assert outside.parent.parent.name == "outside" and outside.samefile(tmp_path / "elsewhere/im1.png")
    assert merged.image_path("a_im0").samefile(a / "images/im0.png")
    assert merge_main([str(a), str(b), "--out", str(tmp_path / "s"), "--allow-outside", "--symlink"]) == 0
    assert (tmp_path / "s" / "a" / "images" / "im0.png").is_symlink()
    assert consensus_main([str(tmp_path / "s")]) == 2
    assert consensus_main([str(tmp_path / "s"), "--allow-outside"]) == 0
