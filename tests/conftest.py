"""Shared fixtures: offline environment, a tiny synthetic dataset, Hydra config composition, a smoke checkpoint."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_SILENT", "true")
# commands the tests start as subprocesses run this checkout's bcc, whatever is installed
ROOT = Path(__file__).resolve().parents[1]
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
# `make test` runs two pytest-xdist workers on the two cores: one torch thread each (and in the commands they
# start), or four spinning threads would share two cores
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# The suite's peak under its temp folder, measured with `df` during `.ci/run` (the backbone sweep's ConvNeXt-T and
# ViT-B/16 checkpoints are most of it): below this, tests fail with ENOSPC far from the cause.
PEAK_TEMP_GB = 5


def pytest_configure(config):
    """Say at the start (and in the warnings summary) when the temp folder's disk cannot hold the suite."""
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the controller says it once
        return
    root = Path(config.option.basetemp or tempfile.gettempdir())
    free_gb = shutil.disk_usage(root if root.exists() else root.parent).free / 2**30
    if free_gb < PEAK_TEMP_GB:
        config.issue_config_time_warning(pytest.PytestConfigWarning(
            f"{free_gb:.1f} GB free under {root}, the suite writes up to {PEAK_TEMP_GB} GB there: free space or "
            f"point pytest at a larger disk (--basetemp=<dir>, or TMPDIR=<dir>)"), stacklevel=2)


@pytest.fixture(autouse=True)
def away_from_the_checkout(tmp_path_factory, monkeypatch):
    """Every test runs in an empty folder of its own, never in the checkout: a relative ``data/`` or
    ``outputs/`` (what ``make demo`` leaves in the working tree) is never found, read or written by a test.
    A test that needs another working directory changes to it (``monkeypatch.chdir``)."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(autouse=True, scope="session")
def bcc_lines_on_the_terminal():
    """bcc's lines shown as a command shows them (``core.log.configure``) from the first test on, so that a test
    calling a library function directly reads its lines from ``capsys`` whatever ran before it."""
    from bcc.core.log import configure

    configure()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A `paths.data_dir` holding `synthetic-smoke/` (what experiment=smoke reads): 100 images of 64 px,
    with labels.csv and splits.csv. Generated once per session."""
    from bcc.data.consensus import ensure_labels
    from bcc.data.folds import ensure_splits
    from bcc.data.synthetic import generate

    root = tmp_path_factory.mktemp("data")
    generate(root / "synthetic-smoke", n=100, size=64, seed=0, progress=False)
    ensure_labels(root / "synthetic-smoke")
    ensure_splits(root / "synthetic-smoke", k=5, seed=0)
    return root


@pytest.fixture
def compose_cfg():
    """compose_cfg(overrides) → the composed training config (conf/), overrides normalised like the CLI's."""
    from bcc.training.config import compose_config

    return lambda overrides=(): compose_config(list(overrides))[0]


@pytest.fixture
def smoke_overrides(data_dir, tmp_path):
    """Overrides for a smoke run writing into this test's tmp_path."""
    return ["experiment=smoke", f"paths.data_dir={data_dir}", f"paths.output_dir={tmp_path / 'out'}"]


@pytest.fixture(scope="module")
def one_thread():
    """One torch/ONNX Runtime thread: on a shared 2-core machine, 2 spinning threads per process made the
    smoke training ~40x slower (measured: 125 s against 3.3 s) whenever other processes held the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ckpt(data_dir, tmp_path_factory) -> Path:
    """The session's smoke checkpoint (stage 0, fold 0), trained on first use."""
    from tests.helpers.checkpoints import trained_checkpoint

    return trained_checkpoint(data_dir, tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def ckpt_factory(data_dir, tmp_path_factory):
    """A function returning the session's smoke checkpoint, trained on first call (for lazy users)."""
    from tests.helpers.checkpoints import trained_checkpoint

    return lambda: trained_checkpoint(data_dir, tmp_path_factory.getbasetemp())
