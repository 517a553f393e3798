"""External validation (``experiment=external``): a trained experiment's fold models on another dataset.

    python -m bcc.data.isic ISIC_2019_Training_GroundTruth.csv ISIC_2019_Training_Input/ --out data/isic2019
    python -m bcc.evaluate experiment=external external.source=outputs/paper data.root=data/isic2019

Each fold's stage-s ``best.ckpt`` of the source experiment scores every image of the external set (none
of which it was trained on). Outputs follow the training layout, ``<output_dir>/<backbone>/fold<k>/
stage<s>/{predictions.csv, metrics.json, .hydra/config.yaml}``, so ``bcc.evaluate`` reads them as they
are (the same command then writes the report, the fold ensemble included). Codes the external set does
not annotate (ISIC 2019: all seven) stay blank and out of the metrics; the diagnosis head is scored
against the set's ``diagnosis``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from bcc.core.errors import BadInput
from bcc.core.io import write_json
from bcc.core.layout import BEST, JOB_CONFIG, METRICS, PREDICTIONS, stage_dir
from bcc.core.patterns import OUTPUTS
from bcc.core.predictions import predictions_frame, write_predictions
from bcc.data.cache import decoded_images
from bcc.data.consensus import ensure_labels
from bcc.data.table import aspects, read_table
from bcc.models.checkpoint import load_network
from bcc.models.metrics import OutputMetrics, nested


def source_checkpoints(source: Path, backbone: str, stage: int) -> dict[int, Path]:
    """fold → best.ckpt of the source experiment; none at all is an error naming what to train."""
    found = {int(p.parent.parent.name[4:]): p for p in sorted(source.glob(f"{backbone}/fold*/stage{stage}/{BEST}"))}
    if not found:
        raise BadInput(
            f"external.source={source}: no {backbone}/fold<k>/stage{stage}/{BEST} there. Point it at a trained "
            f"experiment's output_dir (e.g. outputs/demo after `make demo`), or set external.stage / backbone=")
    return found


@torch.inference_mode()
def score(net: torch.nn.Module, images: np.ndarray, batch_size: int) -> np.ndarray:
    """(N, H, W, 3) uint8 → (N, 8) probabilities in OUTPUTS order."""
    probs = []
    for i in tqdm(range(0, len(images), batch_size), desc="external", leave=False, unit="batch"):
        x = torch.from_numpy(images[i:i + batch_size]).permute(0, 3, 1, 2).float().div_(255.0)
        probs.append(torch.sigmoid(net(x.contiguous(memory_format=torch.channels_last))).numpy())
    return np.concatenate(probs)


def evaluate_external(cfg: DictConfig) -> dict[int, dict]:
    """Score every source fold model on ``data.root``; returns fold → metrics.json content."""
    root, source = Path(cfg.data.root), Path(cfg.external.source)
    stage, backbone = int(cfg.external.stage), str(cfg.backbone.name)
    checkpoints = source_checkpoints(source, backbone, stage)
    outside = bool(cfg.data.get("allow_outside", False))
    ensure_labels(root, allow_outside=outside)
    table = read_table(root, splits=False, allow_outside=outside)
    y = table[list(OUTPUTS)].to_numpy(dtype=np.float32)
    out = Path(cfg.paths.output_dir).resolve()
    results = {}
    for fold, ckpt in checkpoints.items():
        net = load_network(ckpt)
        images = decoded_images(root, list(table["image"]), net.preprocess, allow_outside=outside,
                                aspects=aspects(table))
        p = np.where(net.trained, score(net, images, int(cfg.external.batch_size)), np.nan)  # untrained: no output
        metrics = OutputMetrics("test")
        metrics.use_trained(net.trained)
        metrics.update(torch.from_numpy(p), torch.from_numpy(y))
        job = stage_dir(out, backbone, fold, stage)
        (job / JOB_CONFIG).parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, job / JOB_CONFIG)
        write_predictions(predictions_frame(table["image_id"], fold, y, p), job / PREDICTIONS)
        results[fold] = {"experiment": cfg.experiment_name, "backbone": backbone, "fold": fold, "stage": stage,
                         "source_checkpoint": str(ckpt), "image_size": net.image_size,
                         "n_images": {"test": len(table)}, "test": nested(metrics.compute(), "test")}
        write_json(results[fold], job / METRICS)
    return results
