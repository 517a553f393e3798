"""Drawing primitives of the synthetic images: noise, painting a layer with its exact mask, blobs, the lesion.

Every structure is painted through :func:`paint`: a soft *shape* in [0, 1] is cut to zero below
``MASK_LEVEL`` and the pixels left are the layer's mask. Outside its mask a layer changes nothing, not
even by rounding, which is what makes the masks and the counterfactual twins exact.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

#: a shape below this level is cut to zero: the mask is where it is not (the step it leaves is at most
#: MASK_LEVEL x opacity x colour difference, under 5 grey levels for every layer)
MASK_LEVEL = 0.05


def iround(x) -> int:
    """Nearest int (cv2 wants Python ints for coordinates and sizes)."""
    return int(np.rint(x))


@lru_cache(maxsize=8)
def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise in about [-1, 1] with ~``cells`` features across the image."""
    small = rng.standard_normal((cells + 3, cells + 3)).astype(np.float32)
    big = cv2.resize(small, (size + 2 * (size // cells), size + 2 * (size // cells)), interpolation=cv2.INTER_CUBIC)
    o = size // cells
    return np.ascontiguousarray(big[o: o + size, o: o + size]) * 0.6


def blend(img: np.ndarray, alpha: np.ndarray, color) -> None:
    """In place: img = img * (1 - alpha) + color * alpha. alpha (H, W); color (3,) or (H, W, 3).

    Only the bounding box of the non-zero alpha is touched; where alpha is 0 the pixel keeps its exact
    value (x * 1 + 0 * c == x in floating point)."""
    x, y, w, h = cv2.boundingRect((alpha > 0).view(np.uint8))
    if w == 0 or h == 0:
        return
    sl = (slice(y, y + h), slice(x, x + w))
    a = alpha[sl][..., None]
    color = np.asarray(color, dtype=np.float32)
    if color.ndim == 3:
        color = color[sl]
    sub = img[sl]
    sub *= 1.0 - a
    sub += a * color


def paint(img: np.ndarray, shape: np.ndarray, color, opacity) -> np.ndarray:
    """Blend ``color`` with alpha ``opacity * shape`` where ``shape >= MASK_LEVEL``; return that mask.

    ``color``: (3,) or (H, W, 3); ``opacity``: a scalar or an (H, W) field. The mask does not depend on
    the opacity, so a faint instance keeps the mask of its structure."""
    mask = shape >= MASK_LEVEL
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
    if w == 0 or h == 0:
        return mask
    sl = (slice(y, y + h), slice(x, x + w))
    opacity = np.asarray(opacity, np.float32)
    alpha = np.where(mask[sl], shape[sl] * (opacity[sl] if opacity.ndim == 2 else opacity), np.float32(0))
    color = np.asarray(color, np.float32)
    blend(img[sl], alpha, color[sl] if color.ndim == 3 else color)
    return mask


def blob(rng: np.random.Generator, size: int, cx: float, cy: float, radius: float, rough: float = 0.12,
          kmax: int = 6) -> np.ndarray:
    """Boolean irregular blob: r(theta) = radius * (1 + sum_k a_k cos(k theta + phi_k)), as a polygon."""
    th = np.linspace(0, 2 * np.pi, 128, endpoint=False)
    r = np.ones_like(th)
    for k in range(2, kmax + 1):
        r += rng.uniform(0, rough * 2.0 / k) * np.cos(k * th + rng.uniform(0, 2 * np.pi))
    r = radius * np.maximum(r, 0.2)
    pts = np.stack([cx + r * np.cos(th), cy + r * np.sin(th)], 1)
    canvas = np.zeros((size, size), np.uint8)
    cv2.fillPoly(canvas, [np.round(pts * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    return canvas.view(bool)


def soften(mask: np.ndarray, sigma: float) -> np.ndarray:
    m = mask.astype(np.float32)
    if sigma <= 0.3:
        return m
    return cv2.GaussianBlur(m, (0, 0), sigma)


def jitter_color(rng: np.random.Generator, base, spread: float) -> np.ndarray:
    return np.clip(np.asarray(base, dtype=np.float32) + rng.uniform(-spread, spread, 3), 0, 255).astype(np.float32)


@dataclass(frozen=True)
class Lesion:
    """The lesion's shape (float in [0, 1]), its mask and how deep inside it each of its pixels lies."""

    shape: np.ndarray
    mask: np.ndarray  # bool: shape >= MASK_LEVEL, the pixels the lesion painted
    depth: np.ndarray  # float: distance (px) to the lesion's border or the frame, 0 off the lesion
    ys: np.ndarray  # the mask's pixels and their depth, for drawing points on it
    xs: np.ndarray
    dv: np.ndarray

    @classmethod
    def of(cls, shape: np.ndarray) -> Lesion:
        mask = shape >= MASK_LEVEL
        padded = np.pad(mask.view(np.uint8), 1)  # the frame's edge is a border too
        depth = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_5)[1:-1, 1:-1]
        ys, xs = np.nonzero(mask)
        return cls(shape, mask, depth, ys, xs, depth[ys, xs])


@dataclass
class LesionContext:
    """Where a pattern may go: the lesion, its scale, the device's blur and the pattern's random stream."""

    size: int
    s: float  # size / 256
    R: float  # nominal lesion radius (px)
    lesion: Lesion  # patterns are multiplied by its shape (they fade at its rim) and stay in its mask
    blur: float  # the device's Gaussian blur (px): every layer is softened by it
    rng: np.random.Generator
    strength: float = 1.0  # pattern visibility multiplier (< 0.65: a faint instance)

    def anywhere(self, inset: float = 0.0, rim: float | None = None) -> tuple[float, float]:
        """A point drawn uniformly over the lesion pixels at least ``inset`` px inside its border (and at
        most ``rim`` px when given); on a lesion too small for both, anywhere on it."""
        dv = self.lesion.dv
        inset = min(inset, 0.6 * float(dv.max()))
        band = dv >= inset
        if rim is not None:
            band &= dv <= max(rim, inset + 1.0)
        idx = np.flatnonzero(band)
        k = idx[self.rng.integers(len(idx))] if len(idx) else self.rng.integers(len(dv))
        x, y = self.lesion.xs[k], self.lesion.ys[k]
        return float(x) + self.rng.uniform(-0.5, 0.5), float(y) + self.rng.uniform(-0.5, 0.5)

    def outward(self, x: float, y: float) -> float:
        """Angle (radians) pointing from the inside of the lesion out through its nearest border at (x, y)."""
        depth = self.lesion.depth
        xi = min(max(iround(x), 1), self.size - 2)
        yi = min(max(iround(y), 1), self.size - 2)
        gx = depth[yi, xi + 1] - depth[yi, xi - 1]
        gy = depth[yi + 1, xi] - depth[yi - 1, xi]
        if gx == 0 and gy == 0:
            return float(self.rng.uniform(0, 2 * np.pi))
        return float(np.arctan2(-gy, -gx))

    def soft(self, canvas: np.ndarray, sigma: float) -> np.ndarray:
        """A drawn structure softened by its own ``sigma`` (px at 256) and the device's blur, faded with the lesion."""
        return soften(canvas, float(np.hypot(sigma * self.s, self.blur))) * self.lesion.shape
