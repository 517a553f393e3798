"""Drawing primitives of the synthetic images: noise, blending, irregular blobs, the lesion context."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np


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

    Only the bounding box of the non-zero alpha is touched (patterns are local)."""
    x, y, w, h = cv2.boundingRect((alpha > 1e-3).view(np.uint8) if alpha.dtype == bool
                                  else (alpha > 1e-3).astype(np.uint8))
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


@dataclass
class LesionContext:
    size: int
    s: float  # size / 256
    cx: float
    cy: float
    R: float
    lesion: np.ndarray  # bool
    lesion_alpha: np.ndarray  # float
    rng: np.random.Generator
    strength: float = 1.0  # pattern visibility multiplier (< 0.65: a faint instance)

    def point(self, rmax: float, rmin: float = 0.0) -> tuple[float, float]:
        """A point inside the lesion at a fraction in [rmin, rmax] of the radius from the centre."""
        for _ in range(50):
            ang = self.rng.uniform(0, 2 * np.pi)
            rad = self.R * np.sqrt(self.rng.uniform(rmin ** 2, rmax ** 2))
            x, y = self.cx + rad * np.cos(ang), self.cy + rad * np.sin(ang)
            xi, yi = iround(x), iround(y)
            if 0 <= xi < self.size and 0 <= yi < self.size and self.lesion[yi, xi]:
                return x, y
        return self.cx, self.cy


