"""Does the model *use* what its maps point at? Two deletion tests beside Table 4's localisation.

- Counterfactual twins: ``twins/<image_id>.png`` is the same image re-rendered without its patterns. A
  model that diagnoses BCC from the patterns loses p(BCC) on the twin of a BCC image; one that reads
  the lesion's shape, colour or position does not. ``twin_probabilities`` gives p(BCC) of both.
- ROAD (Rong et al. 2022, pytorch-grad-cam's ``ROADCombined``): pixels are removed in the order a map
  ranks them (most relevant first, MoRF, and least relevant first, LeRF; removed pixels filled by noisy
  linear imputation so the removal itself leaves no shape to detect), and the predicted class's logit is
  read after each removal. Score = (LeRF change − MoRF change) / 2 averaged over the percentiles:
  positive when removing what the map ranks high hurts more than removing what it ranks low.
  ``road_scores`` scores the Grad-CAM map and the centre baseline on the same images.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pytorch_grad_cam.metrics.road import ROADCombined
from scipy.special import expit

from bcc.core.patterns import OUTPUTS
from bcc.models.network import MultitaskNet

TWINS = "twins"  # <dataset>/twins/<image_id>.png
BCC = OUTPUTS.index("bcc")


def twin_path(root: Path, image_id: str) -> Path | None:
    """The twin of an image in dataset `root`, or None if it has none."""
    path = Path(root) / TWINS / f"{image_id}.png"
    return path if path.is_file() else None


def twin_probabilities(net: MultitaskNet, images: torch.Tensor, twins: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """p(BCC) of each image and of its twin (network inputs (N, 3, S, S) in [0, 1])."""
    p = next(net.parameters())
    x = torch.cat([images, twins]).to(p.device)
    if p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last):
        x = x.contiguous(memory_format=torch.channels_last)  # the net's own layout: 3x faster on CPU
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            logits = net(x)[:, BCC].cpu().numpy()
    finally:
        net.train(was_training)
    return expit(logits[:len(images)]), expit(logits[len(images):])


@dataclass(frozen=True)
class LogitTarget:
    """pytorch-grad-cam target: the logit of one output, negated for a map of the negative class."""

    index: int
    sign: float

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return self.sign * output[..., self.index]


def road_scores(net: MultitaskNet, x: torch.Tensor, maps: np.ndarray, signs: Sequence[float],
                percentiles: Sequence[int], seed: int = 0, output: str = "bcc") -> np.ndarray:
    """ROAD combined score of each map (N, S, S) at the network input `x` (N, 3, S, S) for `output`'s logit
    times `signs` (the predicted class). The imputation noise is drawn from a seeded generator."""
    targets = [LogitTarget(OUTPUTS.index(output), float(s)) for s in signs]
    was_training = net.training
    net.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return np.asarray(ROADCombined(percentiles=list(percentiles))(
                x.to(next(net.parameters()).device), np.asarray(maps, np.float32), targets, net), dtype=np.float64)
    finally:
        net.train(was_training)
