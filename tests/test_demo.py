"""The README's `make demo ARGS=experiment=demo_imagenet`, then `make eval` with the same argument, end to end
with non-default settings: a small generated set, 2 folds, 32 px — EfficientNet-Lite0 from its installed ImageNet
weights, so stages 1 → 2 → 3 (no stage 0), stages 1 and 3 on the frozen trunk computed once."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from bcc.cli.demo import main
from bcc.cli.evaluate import main as evaluate_main

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


def test_demo_then_eval_from_imagenet(tmp_path, capsys):
    out = tmp_path / "out"
    paths = [f"paths.data_dir={tmp_path / 'data'}", f"paths.output_dir={out}"]
    rc = main([*paths, "data.generate.n=100",
               "data.generate.size=64", "data.generate.twins=false", "data.generate.progress=false", "data.k=2",
               "data.image_size=32", "experiment=demo_imagenet", "stage.max_epochs=1", "stage.batch_size=16",
               "logger=csv", "trainer.enable_progress_bar=false"])
    said = capsys.readouterr()
    text = said.out + said.err
    assert rc == 0, text[-3000:]
    assert "2 folds × stages 1→2→3, efficientnet_lite0, 32 px (experiment=demo_imagenet)" in text
    assert 'next: `make eval ARGS="experiment=demo_imagenet"`' in text
    assert "Fleiss kappa" in text and "2-fold multilabel-stratified split" in text
    data = tmp_path / "data" / "synthetic"
    assert len(pd.read_csv(data / "images.csv")) == 100 and set(pd.read_csv(data / "splits.csv")["fold"]) == {0, 1}
    for fold in (0, 1):
        job = out / "efficientnet_lite0" / f"fold{fold}"
        assert not (job / "stage0").exists()
        for stage in (1, 2, 3):
            assert set(pd.read_csv(job / f"stage{stage}" / "predictions.csv")["fold"]) == {fold}
        metrics = json.loads((job / "stage3" / "metrics.json").read_text())
        assert metrics["image_size"] == 32 and metrics["start"] == "stage2" and metrics["frozen"]["level"] == "pooled"

    # `make eval ARGS="experiment=demo_imagenet"`: the report over both folds of the ImageNet runs
    assert evaluate_main(["experiment=demo_imagenet", *paths, "wandb.enabled=false", "eval.complexity=false",
                          "eval.table4.road_images=0"]) == 0, capsys.readouterr().err[-3000:]
    table3 = pd.read_csv(out / "report" / "table3.csv")
    bcc = table3[(table3["row"] == "BCC/Non-BCC") & (table3["thresholds"].astype(str) == "0.5")].iloc[0]
    assert bcc["backbone"] == "efficientnet_lite0" and bcc["folds"] == 2 and bcc["n"] == 100
    report = (out / "report" / "report.md").read_text()
    assert "## Table 4" in report and "start of stage 1: ImageNet" in report
