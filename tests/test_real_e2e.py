"""`python -m bcc.real` end to end on a tiny multi-source set made from the smoke data (three sources, one
without BCC, lesion masks): consensus, folds by source, the protocol, leave-one-source-out and the report."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bcc.cli.real import loso_sources, main
from bcc.data.contract import load_dataset

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


@pytest.fixture
def merged(data_dir, tmp_path):
    root = tmp_path / "real" / "merged"
    shutil.copytree(data_dir / "synthetic-smoke", root, ignore=shutil.ignore_patterns(".cache", "*.json", ".*",
                                                                                     "splits.csv", "labels.csv"))
    labels = pd.read_csv(data_dir / "synthetic-smoke" / "labels.csv", dtype={"image_id": str}).set_index("image_id")
    images = pd.read_csv(root / "images.csv", dtype=str)
    images["source"] = ["derm" if i % 3 == 0 else "ham" if i % 3 == 1 else "ph2" for i in range(len(images))]
    images["diagnosis"] = images["image_id"].map(labels["bcc"]).astype(int)
    images.loc[images["source"] == "ph2", "diagnosis"] = 0  # a source without BCC, like PH2
    images["aspect"] = ["1.3333" if s == "ham" else "" for s in images["source"]]
    images.to_csv(root / "images.csv", index=False)
    return root


def test_real_run_reports_sources_held_out_sources_and_lesion_focus(merged, tmp_path, capsys):
    out = tmp_path / "out"
    args = [f"paths.data_dir={merged.parent.parent}", f"paths.output_dir={out}", "data.image_size=64", "data.k=2",
            "stage.max_epochs=1", "stage.batch_size=8", "logger=csv", "trainer.enable_progress_bar=false",
            "++eval.source_probe=true", "eval.table4=null", "wandb.enabled=false"]
    rc = main(args)
    said = capsys.readouterr()
    assert rc == 0, said.err[-3000:]
    assert loso_sources(merged) == ["derm", "ham"]
    for source in ("derm", "ham"):  # ImageNet weights: the BCC stages 1 and 2, no stage 0
        job = out / "loso" / source / "efficientnet_lite0" / "fold0"
        assert (job / "stage2" / "predictions.csv").is_file() and not (job / "stage0").exists()
    report = (out / "report" / "report.md").read_text()
    assert "## Sources: is the AUROC about BCC" in report and "Leave one source out" in report
    assert "## Grad-CAM on real lesions" in report
    bcc = pd.read_csv(out / "report" / "sources_bcc.csv")
    bcc_rows = pd.read_csv(merged / "images.csv")
    assert set(bcc["source"]) == {"all sources", "derm", "ham", "ph2"}
    shortcuts = pd.read_csv(out / "report" / "sources_shortcuts.csv")
    assert set(shortcuts["baseline"]) == {"source prior", "colour statistics"}
    focus = pd.read_csv(out / "report" / "lesion_focus_per_image.csv")
    assert focus["share"].dropna().between(0, 1).all() and focus["share"].notna().any()
    assert focus[["peak_x", "peak_y"]].stack().between(0, 1).all() and set(focus["grid"]) == {"2x2"}
    for figure in ("lesion_focus_worst.png", "lesion_focus_peaks.png"):
        assert (out / "report" / "figures" / figure).stat().st_size > 10_000
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings["steps_seconds"]) >= {"consensus", "folds", "evaluation"}
    held_out = pd.read_csv(out / "report" / "sources_held_out.csv")
    assert set(held_out["held_out"]) == {"derm", "ham"} and set(held_out["stage"]) == {2}
    metrics = json.loads((out / "efficientnet_lite0" / "fold1" / "stage2" / "metrics.json").read_text())
    assert metrics["start"] == "stage1" and metrics["frozen"]["level"] == "trunk"
    splits = pd.read_csv(merged / "splits.csv").merge(pd.read_csv(merged / "images.csv"), on="image_id")
    per_fold = pd.crosstab(splits["fold"], splits["source"])
    assert (per_fold.max() - per_fold.min()).max() <= 2  # every source spread over the folds

    # the linear probe on the stage-1 (ImageNet) features, per source, as a model's predictions would be read
    probe = pd.read_csv(out / "report" / "sources_linear_probe.csv")
    row = probe[(probe["output"] == "bcc") & (probe["source"] == "all sources")]
    assert len(row) == 1 and 0 <= float(row["auroc_pooled"].iloc[0]) <= 1 and int(row["n"].iloc[0]) == len(bcc_rows)

    # a control on the same folds, then the comparison (Table 5 on real pictures)
    rc = main([*args, "--controls=lite0_imagenet_112"])  # its own input size wins over the run's
    said = capsys.readouterr()
    assert rc == 0, said.err[-3000:]
    control = out / "controls" / "lite0_imagenet_112"
    assert json.loads((control / "efficientnet_lite0" / "fold1" / "stage3" / "metrics.json").read_text())["image_size"] == 112
    table = pd.read_csv(out / "controls" / "comparison.csv").set_index("run")
    assert list(table.index) == ["lite0_imagenet_112", ("ImageNet, fine-tuned (make real): linear probe on its stage-1 "
                                 "features"), "ImageNet, fine-tuned (make real)",
                                 "baseline: colour statistics (logistic regression)"]
    assert table.loc["lite0_imagenet_112", "input_px"] == 112 and table.loc["ImageNet, fine-tuned (make real)", "input_px"] == 64
    md = (out / "controls" / "comparison.md").read_text()
    assert "| lite0_imagenet_112 | tf_efficientnet_lite0 | 112 |" in md  # pixels as a whole number
    assert "| baseline: colour statistics (logistic regression) | – | – |" in md

    # the maps' layer chosen on the validation slices' lesion pictures (experiments/real/cam_layers.py)
    cam_layers = _experiment("real", "cam_layers")
    rows = cam_layers.records(out / "efficientnet_lite0", load_dataset(merged), layers=("bn2", "blocks.4"))
    assert set(zip(rows["layer"], rows["grid"], strict=True)) == {("bn2", "2x2"), ("blocks.4", "4x4")}
    for (split, fold), chosen in rows.groupby(["split", "fold"]):  # each fold's model on its own slice
        file = {"validation": "val_predictions.csv", "test": "predictions.csv"}[split]
        slice_ = pd.read_csv(out / "efficientnet_lite0" / f"fold{fold}" / "stage3" / file)
        assert set(chosen["image_id"]) <= set(slice_["image_id"])
    for _, d in rows.groupby("fold"):  # the layer is chosen on pictures the fold's test does not hold
        assert not set(d.loc[d["split"] == "validation", "image_id"]) & set(d.loc[d["split"] == "test", "image_id"])
    summary = cam_layers.summary(rows)
    assert (summary[summary["chosen_on_validation"]].groupby("output")["layer"].nunique() == 1).all()
    assert summary["pictures"].gt(0).all() and summary["share"].between(0, 1).all()

    # the same layer's maps averaged over shifted and flipped passes (experiments/real/cam_shifts.py)
    cam_shifts = _experiment("real", "cam_shifts")
    shifted = cam_shifts.records(out / "efficientnet_lite0", load_dataset(merged))
    assert set(shifted["variant"]) == {"single", "flips", "shifts"} and set(shifted["grid"]) == {"2x2"}
    key = ["split", "fold", "image_id", "output"]
    single = shifted[shifted["variant"] == "single"].set_index(key)["share"]
    record = rows[rows["layer"] == "bn2"].set_index(key)["share"]
    assert single.index.sort_values().equals(record.index.sort_values())
    assert (single - record.loc[single.index]).abs().max() < 0.02  # one pass is the record's map
    moved = shifted[shifted["variant"] == "shifts"].set_index(key)["share"]
    assert (moved - single.loc[moved.index]).abs().max() > 1e-3  # the passes are not the same map
    table = cam_shifts.summary(shifted)
    for column in ("chosen_on_validation", "chosen_by_pointing"):
        assert (table[table[column]].groupby("output")["variant"].nunique() == 1).all()
    pairs = cam_shifts.paired(shifted)
    assert set(pairs["variant"]) == {"flips", "shifts"}
    assert (pairs["fixed"] + pairs["broken"] <= pairs["pictures"]).all()


def test_a_shifted_pass_is_moved_back_onto_the_picture():
    """cam_shifts moves the input by (dy, dx) and the map back: away from the reflected border, the round
    trip is the identity, and a move is a move (not a wrap-around)."""
    import torch

    moved = _experiment("real", "cam_shifts")._moved
    x = torch.arange(2 * 3 * 12 * 12, dtype=torch.float32).reshape(2, 3, 12, 12)
    there = moved(x, 3, -2)
    assert torch.equal(there[..., 3:, :-2], x[..., :-3, 2:])
    assert torch.equal(moved(there, -3, 2)[..., 3:-3, 3:-3], x[..., 3:-3, 3:-3])


def _experiment(folder: str, name: str):
    """A script of experiments/<folder>/ as a module (they are scripts, not part of the package)."""
    path = Path(__file__).resolve().parents[1] / "experiments" / folder / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
