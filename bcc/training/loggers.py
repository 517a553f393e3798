"""Experiment loggers: W&B (offline by default) or CSV, one run per job (backbone x fold x stage).

W&B runs are named ``<backbone>/fold<k>/stage<s>``, grouped by experiment, with job type ``stage<s>`` and
the resolved config; they live in the job's folder (``wandb/offline-run-*``) until ``wandb sync``.
``finish`` closes the run at the end of every job, so one run never swallows the next in a multirun.
Images are logged only with ``log_test_images=true``: patient images stay on the machine by default.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf


def build(cfg: DictConfig) -> Logger:
    """The job's logger from ``cfg.logger`` (a ``_target_`` node); a W&B run also gets the resolved config."""
    build_logger = instantiate(cfg.logger, _partial_=True)  # `config` is also instantiate's own argument
    if "WandbLogger" in str(cfg.logger._target_):
        return build_logger(config=OmegaConf.to_container(cfg, resolve=True))
    return build_logger()


def finish(logger: Logger | None, failed: bool = False) -> None:
    """Close the job's run (W&B: ``wandb.finish``); safe when the run never started."""
    if isinstance(logger, WandbLogger):
        import wandb

        if wandb.run is not None:
            wandb.finish(exit_code=1 if failed else 0)
    elif logger is not None:
        logger.finalize("failed" if failed else "success")


def log_example_images(logger: Logger, images: np.ndarray, captions: Sequence[str], key: str = "test/examples") -> None:
    """A few (H, W, 3) uint8 images with captions; only W&B shows them."""
    if isinstance(logger, WandbLogger) and len(images):
        logger.log_image(key=key, images=list(images), caption=list(captions))
