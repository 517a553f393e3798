"""Scaling out: the SLURM launcher config, DDP on CPU processes, resume after SIGKILL, skip_done."""
import json
import os
import signal
import subprocess
import sys
import time

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from bcc.core.config import CONF_DIR, normalize_overrides
from bcc.training.config import compose_config
from bcc.training.protocol import build_module


def test_slurm_launcher_composes_for_the_protocol():
    overrides = normalize_overrides(["hydra/launcher=slurm", "stage=all", "fold=0-4",
                                     "backbone=mobilenet,convnext,vit", "hydra.launcher.partition=gpu"])
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[o for o in overrides if "," not in o and "range" not in o],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1 and launcher.timeout_min == 720
    assert cfg.stage.name == "all"  # one task runs the fold's stages in order
    assert launcher.submitit_folder.startswith(cfg.paths.output_dir) and ".submitit" in launcher.submitit_folder
    assert overrides[2] == "fold=range(0,5)"



# ---- DDP, resume, skip_done (slow: real training on the smoke set) -------------------------------------
ENV = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}


def _train(args, cwd, **kw):
    return subprocess.Popen([sys.executable, "-m", "bcc.train", *args], cwd=cwd, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def test_epochs_reach_the_sampler_inside_lightnings_ddp_wrapper(data_dir):
    """Under DDP Lightning wraps the train sampler in DistributedSamplerWrapper and calls set_epoch on the
    wrapper; the epoch must reach our sampler (the wrapper forwards it), so each epoch draws a new order,
    new augmentations and new dropout, and replays exactly on resume."""
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    cfg, _ = compose_config(["experiment=smoke", f"paths.data_dir={data_dir}", "stage=1"])
    dm = instantiate(cfg.data, image_size=32, batch_size=8)  # with the configured augmentation (data.augment)
    dm.setup()
    assert [type(t).__name__ for t in dm.dataset("train").transform.transforms] == [
        "Rotate", "Perspective", "GaussianBlur", "HorizontalFlip", "VerticalFlip", "ColorJitter"]  # in config order
    loader = dm.train_dataloader()
    seen = []
    for e in (0, 1, 0):
        wrapped = DistributedSamplerWrapper(loader.sampler, num_replicas=2, rank=0, shuffle=False)
        wrapped.set_epoch(e)
        indices = list(wrapped)
        dropout_seed = torch.initial_seed()  # the sampler reseeds torch's global RNG (dropout) per epoch
        images = np.stack([loader.dataset[i]["image"].numpy() for i in indices])
        seen.append((indices, dropout_seed, images))
    (i0, s0, x0), (i1, s1, _), (i0b, s0b, x0b) = seen
    assert i0 == i0b and s0 == s0b and np.array_equal(x0, x0b)  # an epoch replays exactly (resume)
    assert i0 != i1 and s0 != s1  # the next epoch: new order, new dropout and augmentation stream


@pytest.mark.slow
def test_ddp_three_cpu_processes_score_each_image_once(smoke_overrides, tmp_path):
    """trainer=ddp trainer.accelerator=cpu with 3 gloo processes on a fold whose test (20) and validation (16)
    sets are not divisible by 3: DistributedSampler pads them, yet one set of outputs is written, every
    image once, and the metrics equal a single-process evaluation of the same checkpoint exactly."""
    proc = _train([*smoke_overrides, "stage=0", "fold=0", "logger=csv", "trainer=ddp", "trainer.accelerator=cpu",
                   "trainer.devices=3"], tmp_path)
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log[-4000:]
    job = tmp_path / "out" / "mobilenet" / "fold0" / "stage0"
    m = json.loads((job / "metrics.json").read_text())
    assert m["devices"] == 3
    preds = pd.read_csv(job / "predictions.csv")
    val_preds = pd.read_csv(job / "val_predictions.csv")
    assert preds["image_id"].is_unique and len(preds) == m["n_images"]["test"] == 20  # gathered, once each
    assert val_preds["image_id"].is_unique and len(val_preds) == m["n_images"]["val"] == 16
    cfg = compose_config([*smoke_overrides, "stage=0", "fold=0"])[0]
    dm = instantiate(cfg.data)
    dm.setup("fit")
    model = build_module(cfg, dm, load_pretrained=False)
    single = L.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False)
    for split, run_eval in (("test", single.test), ("val", single.validate)):
        ref = run_eval(model, datamodule=dm, ckpt_path=job / "best.ckpt", verbose=False, weights_only=True)[0]
        for out, metrics in m[split].items():
            for name, value in metrics.items():
                assert ref[f"{split}/{out}/{name}"] == pytest.approx(value, abs=1e-6), (split, out, name)
    mine = model.predictions("test", list(dm.table["image_id"]), 0).merge(preds, on="image_id")
    assert len(mine) == 20 and (mine["p_bcc_x"] - mine["p_bcc_y"]).abs().max() < 1e-5


@pytest.mark.slow
def test_ddp_chained_stages_on_a_fresh_folder(smoke_overrides, tmp_path):
    """The README's CPU DDP command for stage 1 on a fresh output folder trains the missing stage 0 first in
    the same 2 gloo processes: rank 1 must not check stage 0 before rank 0 has finished writing it (it used
    to find it locked, "unfinished", and leave rank 0 waiting on a closed connection)."""
    proc = _train([*smoke_overrides, "stage=1", "fold=0", "logger=csv", "trainer=ddp", "trainer.accelerator=cpu",
                   "trainer.devices=2", "trainer.precision=32-true", "trainer.sync_batchnorm=false"], tmp_path)
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log[-4000:]
    fold = tmp_path / "out" / "mobilenet" / "fold0"
    for s in (0, 1):
        m = json.loads((fold / f"stage{s}" / "metrics.json").read_text())
        assert m["devices"] == 2 and not (fold / f"stage{s}" / "job.lock").exists()
    assert m["trained_on"]["start_sha256"].startswith("sha256:")  # stage 1 records the stage 0 it started from


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_result(smoke_overrides, tmp_path):
    common = [*smoke_overrides[:2], "stage=0", "fold=3", "logger=csv", "stage.max_epochs=3"]
    ref = tmp_path / "ref"
    proc = _train([*common, f"paths.output_dir={ref}"], tmp_path)
    assert proc.wait(timeout=600) == 0, proc.stdout.read()[-3000:]

    out = tmp_path / "killed"
    job = out / "mobilenet" / "fold3" / "stage0"
    proc = _train([*common, f"paths.output_dir={out}"], tmp_path)
    deadline = time.time() + 600
    while not (job / "last.ckpt").is_file():  # the end of epoch 0 or later, then kill inside the next epoch
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()[-3000:]
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (job / "metrics.json").exists()
    proc = _train([*common, f"paths.output_dir={out}", "ckpt_path=last"], tmp_path)
    assert proc.wait(timeout=600) == 0, proc.stdout.read()[-3000:]
    a = json.loads((ref / "mobilenet" / "fold3" / "stage0" / "metrics.json").read_text())
    b = json.loads((job / "metrics.json").read_text())
    assert b["epochs"] == a["epochs"] == 3
    for split in ("val", "test"):
        for o, metrics in a[split].items():
            for name, v in metrics.items():
                assert b[split][o][name] == pytest.approx(v, abs=1e-5), (split, o, name)


@pytest.mark.slow
def test_skip_done_keeps_finished_jobs_and_redoes_partial_ones(smoke_overrides, tmp_path):
    from bcc.training.protocol import run

    base = [*smoke_overrides, "stage=all", "fold=4", "logger=csv", "skip_done=true"]
    first = run(base)
    root = tmp_path / "out" / "mobilenet" / "fold4"
    (root / "stage3" / "metrics.json").unlink()  # stage 3 interrupted before it finished
    stamps = {s: (root / f"stage{s}" / "best.ckpt").stat().st_mtime_ns for s in range(4)}
    again = run(base)
    assert all((root / f"stage{s}" / "best.ckpt").stat().st_mtime_ns == stamps[s] for s in range(3))
    assert (root / "stage3" / "best.ckpt").stat().st_mtime_ns > stamps[3]
    assert (root / "stage3" / "metrics.json").is_file()
    assert again[2] == first[2] and again[3]["test"] == first[3]["test"]
