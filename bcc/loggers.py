"""Experiment loggers: W&B (offline by default) or CSV, one run per job (backbone x fold x stage).

W&B runs are named ``<backbone>/fold<k>/stage<s>``, grouped by experiment, with job type ``stage<s>`` and
the resolved config; they live in the job's folder (``wandb/offline-run-*``) until ``wandb sync``.
``finish`` closes the run at the end of every job, so one run never swallows the next in a multirun.
Images are logged only with ``logger.log_images=true``: patient images stay on the machine by default.
"""
from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf


def run_name(backbone: str, fold: int, stage: int) -> str:
    return f"{backbone}/fold{int(fold)}/stage{int(stage)}"


def make_logger(cfg: DictConfig, job_dir: Path, stage: int) -> Logger:
    kind = cfg.logger.kind
    if kind == "csv":
        return CSVLogger(save_dir=str(job_dir), name="csv", version="")
    if kind != "wandb":
        raise ValueError(f"logger.kind={kind!r}: choose logger=wandb or logger=csv")
    import wandb

    offline = bool(cfg.logger.get("offline", True))
    settings = wandb.Settings(silent=True, console="off", x_disable_stats=True, x_disable_machine_info=True,
                              save_code=False, disable_git=True)
    return WandbLogger(
        name=run_name(cfg.backbone.name, cfg.fold, stage), save_dir=str(job_dir), dir=str(job_dir),
        project=cfg.logger.get("project", "bcc"), group=cfg.experiment_name, job_type=f"stage{int(stage)}",
        offline=offline, config=OmegaConf.to_container(cfg, resolve=True), settings=settings,
        tags=[f"fold{int(cfg.fold)}", f"stage{int(stage)}", cfg.backbone.name])


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


def _wandb_records(path: Path):
    """The protobuf payloads of a ``.wandb`` file (LevelDB log format: 32 KiB blocks, 7-byte headers)."""
    data, block, pos, parts = Path(path).read_bytes(), 32768, 7, b""  # file header ":W&B" magic version
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:  # full
            yield chunk
        elif kind == 2:  # first
            parts = chunk
        elif kind == 3:  # middle
            parts += chunk
        elif kind == 4:  # last
            yield parts + chunk


def read_offline_run(run_dir: Path) -> dict[str, Any]:
    """Config, history rows and final summary of an offline W&B run folder, read from its ``.wandb`` log."""
    from wandb.proto import wandb_internal_pb2 as pb

    run: dict[str, Any] = {"config": {}, "history": [], "summary": {}, "name": None, "group": None, "job_type": None}
    for path in sorted(Path(run_dir).glob("run-*.wandb")):
        for payload in _wandb_records(path):
            rec = pb.Record()
            rec.ParseFromString(payload)
            kind = rec.WhichOneof("record_type")
            if kind == "history":
                run["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                       for i in rec.history.item})
            elif kind == "summary":
                run["summary"].update({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                       for i in rec.summary.update})
            elif kind == "config":
                run["config"].update({i.key: json.loads(i.value_json) for i in rec.config.update})
            elif kind == "run":
                run.update(name=rec.run.display_name, group=rec.run.run_group, job_type=rec.run.job_type)
                run["config"].update({i.key: json.loads(i.value_json) for i in rec.run.config.update})
    return run
