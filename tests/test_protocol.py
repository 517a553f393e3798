"""The paper's protocol on the smoke set: which parts each stage may change (bit for bit), the
validation-only calibration, and a job folder's lifecycle (lock, unfinished stages)."""
from __future__ import annotations

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
from hydra.utils import instantiate

from bcc.core import jobs
from bcc.core.layout import CALIBRATION, LOCK, METRICS, VAL_PREDICTIONS
from bcc.core.predictions import read_predictions
from bcc.models.calibration import fit_calibration, fit_scaling, scale, youden_threshold
from bcc.training.config import compose_config
from bcc.training.protocol import run, starting_module
from bcc.training.stages import MissingStageError


def _heads(state: dict, head: str) -> dict:
    return {k: v for k, v in state.items() if k.startswith(f"net.heads.{head}.")}


def _part(state: dict, prefix: str) -> dict:
    return {k: v for k, v in state.items() if k.startswith(prefix)}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and len(a) > 0 and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def protocol_run(data_dir, tmp_path_factory):
    """Stages 0 → 3 of fold 1 on the smoke set: the output folder."""
    out = tmp_path_factory.mktemp("protocol") / "out"
    run(["experiment=smoke", f"paths.data_dir={data_dir}", f"paths.output_dir={out}", "stage=all", "fold=1",
         "logger=csv"])
    return out / "mobilenet" / "fold1"


def _state(fold_dir, stage: int) -> dict:
    return torch.load(fold_dir / f"stage{stage}" / "best.ckpt", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_stages_1_and_2_train_bcc_only_and_stage_3_only_the_pattern_heads(protocol_run, data_dir):
    s0, s1, s2, s3 = (_state(protocol_run, s) for s in range(4))
    # stage 1: the PN and pattern heads are exactly as it starts with them, the backbone exactly stage 0's
    def started(stage: int, start=None):
        cfg = compose_config(["experiment=smoke", f"paths.data_dir={data_dir}", f"stage={stage}", "fold=1"])[0]
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        dm = instantiate(cfg.data)
        dm.setup("fit")
        return starting_module(cfg, dm, start, backbone_only=start is not None).state_dict()

    initial = started(1, protocol_run / "stage0" / "best.ckpt")
    for head in ("negative", "patterns"):
        assert _same(_heads(s1, head), _heads(initial, head)), f"stage 1 changed the {head} head"
        assert _same(_heads(s2, head), _heads(s1, head)), f"stage 2 changed the {head} head"
        # drawn afresh, not the initial heads that stage 0's backbone was trained through
        assert not _same(_heads(initial, head), _heads(started(0), head))
    assert not _same(_heads(s1, "diagnosis"), _heads(initial, "diagnosis"))  # the BCC head did train
    assert _same(_part(s1, "net.backbone."), _part(s0, "net.backbone."))  # frozen, BatchNorm statistics too
    # stage 3: backbone and diagnosis head exactly as stage 2 left them; the pattern heads trained
    assert _same(_part(s3, "net.backbone."), _part(s2, "net.backbone."))
    assert _same(_heads(s3, "diagnosis"), _heads(s2, "diagnosis"))
    assert not _same(_heads(s3, "patterns"), _heads(s2, "patterns"))
    assert not _same(_part(s2, "net.backbone."), _part(s1, "net.backbone."))  # stage 2 fine-tuned blocks


@pytest.mark.slow
def test_calibration_is_fitted_on_the_validation_slice_only(protocol_run):
    job = protocol_run / "stage3"
    saved = json.loads((job / CALIBRATION).read_text())
    val = read_predictions(job / VAL_PREDICTIONS)
    test = read_predictions(job / "predictions.csv")
    assert set(val["image_id"]).isdisjoint(test["image_id"])
    assert fit_calibration(val) == saved["outputs"]  # exactly what the validation predictions give
    shuffled = test.assign(**{c: test[c].sample(frac=1, random_state=0).to_numpy() for c in test if c[:2] in "y_p_"})
    assert fit_calibration(pd.concat([val, shuffled])) != saved["outputs"]  # the test fold would change it


def test_temperature_bias_and_threshold_fits():
    rng = torch.Generator().manual_seed(0)
    z = torch.randn(4000, generator=rng).numpy() * 2 - 2  # a rare positive class, as BCC
    truth = 1 / (1 + np.exp(-z))
    y = (torch.rand(4000, generator=rng).numpy() < truth).astype(float)
    p_over = 1 / (1 + np.exp(-3 * z))  # overconfident by a factor 3
    t, b = fit_scaling(y, p_over)
    assert t == pytest.approx(3.0, rel=0.1) and abs(b) < 0.15
    assert abs(scale(p_over, t, b) - truth).max() < 0.05
    # trained on balanced batches: the logit shifted by +2 (a prior of 1/2 instead of the data's); a temperature
    # alone cannot undo a shift, the bias does
    p_shifted = 1 / (1 + np.exp(-(z + 2)))
    t, b = fit_scaling(y, p_shifted)
    assert t == pytest.approx(1.0, rel=0.1) and b == pytest.approx(-2.0, abs=0.2)
    assert abs(scale(p_shifted, t, b) - truth).max() < 0.05
    assert youden_threshold([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == pytest.approx(0.5)
    assert fit_scaling([1, 1, 1], [0.2, 0.4, 0.9]) == (1.0, 0.0)  # one class: nothing to fit
    # a small validation slice the scores separate (6 positives among 182): hard 0/1 targets drive the temperature
    # to its lower bound (0.05) and p to exactly 0 or 1; Platt's targets keep the fit off the bounds
    p_small = np.r_[np.linspace(0.6, 0.95, 6), np.linspace(0.01, 0.5, 176)]
    y_small = np.r_[np.ones(6), np.zeros(176)]
    t, b = fit_scaling(y_small, p_small)
    assert t > 0.2 and -10 < b < 0
    assert 0.9 < scale(0.95, t, b) < 0.999 and 1e-9 < scale(0.01, t, b) < 1e-3


def test_a_second_job_on_the_same_folder_is_refused(tmp_path):
    job = tmp_path / "job"
    with jobs.locked(job, "python -m bcc.train first"), pytest.raises(
            jobs.JobLockedError, match=rf"{os.getpid()} on .*python -m bcc.train first"), \
            jobs.locked(job, "python -m bcc.train second"):
        pass
    assert (job / LOCK).is_file() and jobs.unfinished(job) is not None  # not finished: the record stays
    jobs.finished(job)
    assert jobs.unfinished(job) is None


def test_a_lock_left_by_a_killed_job_is_stale_and_named(tmp_path):
    job = tmp_path / "job"
    code = ("import sys, time; sys.path.insert(0, sys.argv[2]); from pathlib import Path; from bcc.core import jobs\n"
            "with jobs.locked(Path(sys.argv[1]), 'the killed job'):\n    print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(job), str(os.environ["PYTHONPATH"].split(os.pathsep)[0])],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(jobs.JobLockedError, match=rf"pid {proc.pid}"), jobs.locked(job):
        pass
    proc.kill()
    proc.wait()
    with jobs.locked(job) as stale:  # flock died with its process: taken over, the old record reported
        assert stale["pid"] == proc.pid and stale["command"] == "the killed job"


@pytest.mark.slow
def test_sigterm_exits_nonzero_and_the_next_stage_refuses_the_unfinished_one(smoke_overrides, tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    args = [*smoke_overrides, "stage=0", "fold=2", "logger=csv", "stage.max_epochs=50"]
    proc = subprocess.Popen([sys.executable, "-m", "bcc.train", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job = tmp_path / "out" / "mobilenet" / "fold2" / "stage0"
    deadline = time.time() + 300
    while not (job / "last.ckpt").is_file():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "unfinished" in err and "ckpt_path=last" in err
    assert not (job / METRICS).exists() and (job / LOCK).is_file()
    with pytest.raises(MissingStageError, match=r"stage 0, which is unfinished.*stage=0 fold=2 ckpt_path=last"):
        run([*smoke_overrides, "stage=1", "fold=2", "logger=csv"])
    resumed = run([*smoke_overrides, "stage=0", "fold=2", "logger=csv", "stage.max_epochs=3", "ckpt_path=last"])
    assert resumed[0]["epochs"] == 3 and not (job / LOCK).exists() and (job / METRICS).is_file()
