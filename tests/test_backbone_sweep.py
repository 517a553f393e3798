"""experiment=backbone_sweep: the Hydra multirun over mobilenet, convnext and vit (at smoke sizes on CPU),
Table 5 from its runs, and the equivalent W&B sweep spec."""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bcc.cli import evaluate as evaluate_cli
from bcc.evaluation.pipeline import evaluate

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["data.image_size=32", "data.val_fraction=0.2", "++stage.max_epochs=1", "++stage.batch_size=8",
         "model.bn_recalibration_batches=2", "trainer.enable_progress_bar=false", "logger=csv"]


def test_wandb_sweep_spec_is_the_same_grid(compose_cfg):
    spec = yaml.safe_load((ROOT / "experiments" / "backbone_sweep" / "sweep.yaml").read_text())
    grid = spec["parameters"]
    assert spec["command"][2:4] == ["-m", "bcc.train"] and "${args_no_hyphens}" in spec["command"]
    hydra_params = compose_cfg(["experiment=backbone_sweep"])
    assert hydra_params.stage.name == "all" and hydra_params.experiment_name == "backbone_sweep"
    for backbone, fold in itertools.product(grid["backbone"]["values"], grid["fold"]["values"]):
        cfg = compose_cfg([f"experiment={grid['experiment']['value']}", f"backbone={backbone}", f"fold={fold}",
                           f"logger.offline={grid['logger.offline']['value']}"])
        assert (cfg.backbone.name, cfg.fold, cfg.stage.name) == (backbone, fold, "all")
    assert sorted(grid["backbone"]["values"]) == ["convnext", "mobilenet", "vit"] and grid["fold"]["values"] == [0, 1, 2, 3, 4]


def test_every_sweep_selects_on_validation():
    """A sweep that ranks runs by a test-fold metric leaks the test fold into the choice: each W&B sweep spec
    names a metric training logs on the validation slice (OutputMetrics("val"): val/<output>/<metric>)."""
    from bcc.training.config import validation_metrics

    logged = validation_metrics()
    specs = sorted(ROOT.glob("experiments/**/sweep*.yaml"))
    assert specs
    for path in specs:
        metric = yaml.safe_load(path.read_text())["metric"]
        assert metric["name"] in logged, (path, metric)


@pytest.mark.slow
def test_sweep_runs_every_backbone_and_eval_writes_table5(data_dir, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "bcc.train", "experiment=backbone_sweep", "--multirun", "fold=0",
           f"data.root={data_dir / 'synthetic-smoke'}", f"paths.output_dir={out}", *SMOKE]
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for backbone in ("mobilenet", "convnext", "vit"):
        for stage in (0, 1, 2, 3):
            assert (out / backbone / "fold0" / f"stage{stage}" / "predictions.csv").is_file(), (backbone, stage)
    ev = evaluate(evaluate_cli.load_config([f"output_dir={out}", "experiment=backbone_sweep", "eval.k=1",
                                                 "wandb.enabled=false", "eval.table4=null",
                                                 "eval.bench_batch=1", "eval.bench_repeats=1"]))
    t5 = pd.read_csv(ev.report_dir / "table5.csv").set_index("backbone")
    assert list(t5.index) == ["convnext", "mobilenet", "vit"]
    assert t5.loc["mobilenet", "params_M"] < t5.loc["convnext", "params_M"] < t5.loc["vit", "params_M"]
    assert (t5["input_px"] == 32).all() and (t5["GFLOPs"] > 0).all()
