"""``python -m bcc.predict checkpoint=<ckpt|onnx> input=<dir|image> output=<dir> [key=value ...]``: triage.

Options: ``conf/predict.yaml`` (``core.settings.PredictConfig``); the work: ``bcc.deploy.triage.run_triage``.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from omegaconf import DictConfig

from bcc.core.cli import hydra_command, options
from bcc.core.settings import PredictConfig
from bcc.deploy.triage import run_triage


def task(cfg: DictConfig) -> None:
    run_triage(options(cfg, ("checkpoint", "input", "output"), PredictConfig))


def main(argv: Sequence[str] | None = None) -> int:
    return hydra_command("bcc.predict", "predict", task, sys.argv[1:] if argv is None else argv)
