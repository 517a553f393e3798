"""End-to-end training on the smoke experiment (tiny synthetic set, 1-2 epochs per stage)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from bcc.core.patterns import OUTPUTS
from bcc.training.protocol import run
from bcc.training.stages import MissingStageError
from tests.helpers.wandb_records import read_offline_run

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
PRED_COLUMNS = ["image_id", "fold", *(f"y_{o}" for o in OUTPUTS), *(f"p_{o}" for o in OUTPUTS)]


def test_multirun_command_as_typed(data_dir, tmp_path):
    """`python -m bcc.train stage=1,2,3 fold=0-4 --multirun`: stage 0 runs first where needed, every job
    gets its own folder, checkpoint, predictions and W&B run."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "bcc.train", "stage=1,2,3", "fold=0-4", "--multirun", "experiment=smoke",
           f"paths.data_dir={data_dir}", f"paths.output_dir={out}"]
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    preds = []
    for fold in range(5):
        for stage in range(4):
            job = out / "mobilenet" / f"fold{fold}" / f"stage{stage}"
            for name in ("best.ckpt", "last.ckpt", "predictions.csv", "metrics.json", ".hydra/config.yaml"):
                assert (job / name).is_file(), job / name
            m = json.loads((job / "metrics.json").read_text())
            assert (m["fold"], m["stage"]) == (fold, stage)
            assert m["start"] == {0: "scratch", 1: "stage0", 2: "stage1", 3: "stage2"}[stage]
            assert m["seed"] == 0 and m["machine"]["cores"] == os.cpu_count() and m["machine"]["cpu"]
            runs = list((job / "wandb").glob("offline-run-*"))
            assert len(runs) == 1
            assert read_offline_run(runs[0])["name"] == f"mobilenet/fold{fold}/stage{stage}"
        p = pd.read_csv(out / "mobilenet" / f"fold{fold}" / "stage3" / "predictions.csv")
        assert list(p.columns) == PRED_COLUMNS and (p["fold"] == fold).all()
        preds.append(p)
    ids = pd.concat(preds)["image_id"]
    assert ids.is_unique and len(ids) == 100  # the test folds cover every image once
    assert not list(tmp_path.glob("multirun")) and not list(tmp_path.glob("outputs"))  # no timestamp folders


def test_whole_fold_in_one_process_with_wandb(smoke_overrides, tmp_path):
    """stage=all: 0 → 1 → 2 → 3; each stage's own W&B run holds its metrics; the saved best checkpoint,
    evaluated again, gives the validation metric that selected it."""
    import lightning as L
    from hydra.utils import instantiate

    from bcc.training.config import compose_config
    from bcc.training.protocol import build_module

    results = run([*smoke_overrides, "stage=all", "fold=1", "log_test_images=true"])
    assert sorted(results) == [0, 1, 2, 3]
    out = tmp_path / "out" / "mobilenet" / "fold1"
    for stage, m in results.items():
        run_dir = next((out / f"stage{stage}" / "wandb").glob("offline-run-*"))
        logged = read_offline_run(run_dir)
        assert logged["group"] == "smoke" and logged["job_type"] == f"stage{stage}"
        assert logged["summary"]["test/bcc/accuracy"] == pytest.approx(m["test"]["bcc"]["accuracy"])
        assert "val/bcc/auroc" in logged["summary"] and logged["config"]["fold"] == 1
        monitor = m["monitor"]
        history = [row[monitor] for row in logged["history"] if monitor in row]
        assert m["best_score"] == pytest.approx(max(history), abs=1e-6)
        out_name, metric = monitor.split("/")[1:]
        assert m["val"][out_name][metric] == pytest.approx(m["best_score"], abs=1e-6)
    # evaluate the saved checkpoint from scratch: same validation metric as logged
    ckpt = out / "stage2" / "best.ckpt"
    saved = torch.load(ckpt, weights_only=True)["hyper_parameters"]  # a bcc checkpoint loads safely
    assert saved["stage"] == 2 and saved["network"]["backbone"] == "mobilenet"
    cfg = compose_config([*smoke_overrides, "stage=2", "fold=1"])[0]
    dm = instantiate(cfg.data)
    dm.setup("fit")
    model = build_module(cfg, dm, load_pretrained=False)
    evaluator = L.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False)
    val = evaluator.validate(model, datamodule=dm, ckpt_path=ckpt, verbose=False, weights_only=True)[0]
    assert val["val/bcc/auroc"] == pytest.approx(results[2]["best_score"], abs=1e-6)
    images = [r["test/examples/count"] for r in
              read_offline_run(next((out / "stage3" / "wandb").glob("offline-run-*")))["history"]
              if "test/examples/count" in r]
    assert images == [8]  # 8 test images with captions, logged only because log_test_images=true


def test_same_seed_same_metrics_and_resume(smoke_overrides, tmp_path):
    base = [*smoke_overrides, "stage=0", "logger=csv", "fold=2"]
    a = run(base)[0]
    b = run(base)[0]
    assert a["test"] == b["test"] and a["val"] == b["val"]
    # resume: train 1 more epoch from last.ckpt
    job = tmp_path / "out" / "mobilenet" / "fold2" / "stage0"
    step = torch.load(job / "last.ckpt", weights_only=True)["global_step"]
    c = run([*base, "ckpt_path=last", "stage.max_epochs=3"])[0]
    assert c["epochs"] == 3
    assert torch.load(job / "last.ckpt", weights_only=True)["global_step"] == step * 3 // 2


def test_missing_predecessor_is_a_clear_error(smoke_overrides):
    with pytest.raises(MissingStageError, match=r"stage=2 fold=3 experiment=smoke"):
        run([*smoke_overrides, "stage=3", "fold=3", "logger=csv"])


def test_non_finite_loss_names_stage_epoch_batch(smoke_overrides, monkeypatch):
    from bcc.models.losses import MultitaskFocalLoss
    from bcc.training.module import NonFiniteLossError

    real = MultitaskFocalLoss.forward
    calls = {"n": 0}

    def poisoned(self, logits, targets):
        loss, heads = real(self, logits, targets)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 3 else loss), heads

    monkeypatch.setattr(MultitaskFocalLoss, "forward", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"stage 0: non-finite loss \(nan\) at epoch 0, batch 2"):
        run([*smoke_overrides, "stage=0", "logger=csv", "fold=4"])
