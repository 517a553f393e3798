"""Grad-CAM maps as pictures: the jet colour map of the paper's figures, blended over the lesion."""
from __future__ import annotations

import numpy as np
from matplotlib import colormaps

JET = colormaps["jet"]  # looked up once: matplotlib's registry hands out a fresh copy on every access


def heat_rgb(z: np.ndarray) -> np.ndarray:
    """(H, W) map in [0, 1] → (H, W, 3) float RGB with the jet colour map (as the paper's figures)."""
    return JET(np.clip(z, 0, 1))[..., :3]


def overlay(rgb: np.ndarray, z: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """uint8 RGB: `alpha` x heat map + (1 - alpha) x image."""
    mix = alpha * heat_rgb(z) + (1 - alpha) * (rgb.astype(np.float32) / 255.0)
    return np.clip(mix * 255.0 + 0.5, 0, 255).astype(np.uint8)
