"""trainer=gpu and trainer=ddp on CUDA devices, end to end on the smoke set; skipped where there are none."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd

from tests.helpers.run_if import RunIf

ENV = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}


def _stage0(smoke_overrides, tmp_path, *trainer: str) -> dict:
    """Stage 0 of fold 0 with `trainer` overrides: its metrics.json, after checking the outputs are whole."""
    proc = subprocess.run([sys.executable, "-m", "bcc.train", *smoke_overrides, "stage=0", "fold=0", "logger=csv",
                           *trainer], check=False, cwd=tmp_path, env=ENV, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    job = tmp_path / "out" / "mobilenet" / "fold0" / "stage0"
    metrics = json.loads((job / "metrics.json").read_text())
    preds = pd.read_csv(job / "predictions.csv")
    assert preds["image_id"].is_unique and len(preds) == metrics["n_images"]["test"]
    assert metrics["machine"]["gpu"] and 0 <= metrics["test"]["bcc"]["auroc"] <= 1
    return metrics


@RunIf(min_gpus=1)
def test_gpu_trainer_trains_and_scores_a_stage(smoke_overrides, tmp_path):
    """trainer=gpu: mixed precision on one device."""
    assert _stage0(smoke_overrides, tmp_path, "trainer=gpu")["devices"] == 1


@RunIf(min_gpus=2)
def test_ddp_on_two_gpus_scores_each_image_once(smoke_overrides, tmp_path):
    """trainer=ddp over two GPUs: one set of outputs, every test image once."""
    assert _stage0(smoke_overrides, tmp_path, "trainer=ddp", "trainer.devices=2")["devices"] == 2
