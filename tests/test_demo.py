"""`python -m bcc.demo` (the README's `make demo ARGS=experiment=demo_imagenet`) end to end with non-default
settings: a small generated set, 2 folds, 32 px — EfficientNet-Lite0 from its installed ImageNet weights, so
stages 1 → 2 → 3 (no stage 0), stages 1 and 3 on the frozen trunk computed once."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from bcc.cli.demo import main

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


def test_demo_generates_the_set_and_runs_the_protocol_on_every_fold(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main([f"paths.data_dir={tmp_path / 'data'}", f"paths.output_dir={out}", "data.generate.n=100",
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
