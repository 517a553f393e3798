"""Shared fixtures: offline environment, a tiny synthetic dataset, Hydra config composition."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A `paths.data_dir` holding `synthetic-smoke/` (what experiment=smoke reads): 100 images of 64 px,
    with labels.csv and splits.csv. Generated once per session."""
    from bcc.consensus import ensure_labels
    from bcc.data.synthetic import generate
    from bcc.folds import ensure_splits

    root = tmp_path_factory.mktemp("data")
    generate(root / "synthetic-smoke", n=100, size=64, seed=0, progress=False)
    ensure_labels(root / "synthetic-smoke")
    ensure_splits(root / "synthetic-smoke", k=5, seed=0)
    return root


@pytest.fixture
def compose_cfg():
    """compose_cfg(overrides) → the composed config (conf/), overrides normalised like the CLI's."""
    from hydra import compose, initialize_config_dir

    from bcc.train import CONF_DIR, normalize_overrides

    def _compose(overrides=()):
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return compose(config_name="config", overrides=normalize_overrides(list(overrides)))

    return _compose


@pytest.fixture
def smoke_overrides(data_dir, tmp_path):
    """Overrides for a smoke run writing into this test's tmp_path."""
    return ["experiment=smoke", f"paths.data_dir={data_dir}", f"paths.output_dir={tmp_path / 'out'}"]
