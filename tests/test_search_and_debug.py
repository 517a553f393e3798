"""hparams_search=optuna (a study ranked by a validation metric the training task returns) and the debug
group (debug=fast, debug=overfit), as commands."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf

from bcc.core.errors import UsageError
from bcc.training.config import check_config, validation_metrics

ENV = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}


def _train(args, cwd) -> None:
    proc = subprocess.run([sys.executable, "-m", "bcc.train", *args], check=False, cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_hparams_search_is_an_optuna_study_on_validation():
    from hydra import compose, initialize_config_dir

    from bcc.core.config import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["hparams_search=optuna"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert cfg.optimized_metric in validation_metrics()
    assert set(sweeper.params) == {"stage.lr", "stage.gamma", "model.net.dropout"}
    assert "${stage.lr}" in OmegaConf.to_container(cfg.paths)["output_dir"]  # one folder per trial


def test_optimized_metric_on_the_test_fold_is_refused(compose_cfg):
    with pytest.raises(UsageError, match=r"optimized_metric=test/bcc/accuracy .* leaks"):
        check_config(compose_cfg(["optimized_metric=test/bcc/accuracy"]))
    check_config(compose_cfg(["optimized_metric=val/patterns/auroc"]))


@pytest.mark.slow
def test_a_search_ranks_trials_by_the_value_the_task_returns(data_dir, tmp_path):
    """Two trials of stage 0 on the smoke set: each in its own folder, and the study's best value is the best
    trial's validation AUROC of p(BCC) from its metrics.json."""
    _train(["hparams_search=optuna", "experiment=smoke", "stage=0", f"paths.data_dir={data_dir}", "logger=csv",
            "hydra.sweeper.n_trials=2"], tmp_path)
    study = tmp_path / "outputs" / "smoke" / "hparams_search"
    trials = [json.loads(p.read_text()) for p in sorted(study.glob("lr*/mobilenet/fold0/stage0/metrics.json"))]
    assert len(trials) == 2
    best = yaml.safe_load((study / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(t["val"]["bcc"]["auroc"] for t in trials))
    assert set(best["best_params"]) == {"stage.lr", "stage.gamma", "model.net.dropout"}


@pytest.mark.slow
def test_debug_fast_runs_every_stage_on_two_batches(data_dir, tmp_path):
    out = tmp_path / "out"
    _train(["debug=fast", "experiment=smoke", "stage=all", f"paths.data_dir={data_dir}", f"paths.output_dir={out}",
            "stage.batch_size=4", "data.eval_batch_size=4"], tmp_path)
    for s in range(4):
        job = out / "mobilenet" / "fold0" / f"stage{s}"
        m = json.loads((job / "metrics.json").read_text())
        assert m["epochs"] == 1 and m["image_size"] == 32
        assert len(pd.read_csv(job / "predictions.csv")) == 8  # 2 test batches of 4, of the fold's 20


@pytest.mark.slow
def test_debug_overfit_drives_the_training_loss_down(data_dir, tmp_path):
    out = tmp_path / "out"
    _train(["debug=overfit", "experiment=smoke", f"paths.data_dir={data_dir}", f"paths.output_dir={out}",
            "stage.max_epochs=10", "trainer.check_val_every_n_epoch=10"], tmp_path)
    log = pd.read_csv(out / "mobilenet" / "fold0" / "stage0" / "csv" / "metrics.csv")
    loss = log["train/loss_epoch"].dropna().to_numpy()
    assert len(loss) == 10 and loss[-1] < 0.5 * loss[0]
