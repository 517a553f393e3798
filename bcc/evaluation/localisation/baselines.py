"""What an uninformed map scores in Table 4: the rows a model's Grad-CAM must beat.

- ``centre_map``: a Gaussian centred on the image — a model that looks at the middle of the picture
  (dermoscopic lesions are photographed centred, so this map is already "on the lesion");
- ``uniform_map``: 1 on the whole lesion, 0 elsewhere — a model that finds the lesion but not its
  patterns (needs the lesion mask);
- ``shuffled_pairs``: the model's own map against another image's mask — a map that is on the lesion
  and has the model's texture, but does not follow *this* image's patterns.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image


def centre_map(shape: Sequence[int], sigma: float = 0.25) -> np.ndarray:
    """A centred Gaussian of standard deviation `sigma` × the side (each axis), min-max scaled to [0, 1]
    like a Grad-CAM map."""
    h, w = (int(s) for s in shape)
    yy, xx = (np.arange(h) + 0.5 - h / 2) / h, (np.arange(w) + 0.5 - w / 2) / w
    r2 = yy[:, None] ** 2 + xx[None, :] ** 2  # independent of sigma: every width ranks the pixels alike
    g = np.exp(-0.5 * r2 / sigma ** 2)
    return (g - g.min()) / (g.max() - g.min())


def uniform_map(lesion: np.ndarray) -> np.ndarray:
    """1 inside the lesion, 0 outside."""
    return np.asarray(lesion, bool).astype(np.float64)


def shuffled_pairs(image_ids: Sequence[str], seed: int = 0) -> dict[str, str]:
    """image_id → the id whose mask it is compared with: a seeded random cycle, so no image keeps its own
    mask and every mask is used once. Empty for fewer than two images."""
    ids = list(image_ids)
    if len(ids) < 2:
        return {}
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    return {a: b for a, b in zip(order, order[1:] + order[:1], strict=True)}


def fit_mask(mask: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """A boolean mask resized (nearest neighbour) to `shape` (H, W): another image's mask on this image."""
    mask = np.asarray(mask, bool)
    if mask.shape == tuple(shape):
        return mask
    im = Image.fromarray(mask.astype(np.uint8) * 255).resize((int(shape[1]), int(shape[0])), Image.Resampling.NEAREST)
    return np.asarray(im) > 0
