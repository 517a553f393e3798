"""One synthetic dermoscopic image: skin, lesion, confounders, patterns, hairs and the device's look."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import cv2
import numpy as np

from bcc.core.patterns import CODES
from bcc.data.synthetic.patterns import DRAWERS, FAINT_RATE, PAINT_ORDER, draw_confounders
from bcc.data.synthetic.shapes import (
    LesionContext,
    blend,
    blob,
    grid,
    iround,
    jitter_color,
    smooth_noise,
    soften,
)


@dataclass(frozen=True)
class Device:
    gains: tuple[float, float, float]  # RGB multiplicative colour cast
    gamma: float
    blur: float  # Gaussian sigma in units of size/256
    noise: float  # Gaussian noise sigma (0-255 scale)
    vignette: float  # 0..1 darkening at the corners
    aperture: bool  # dark circular dermatoscope aperture


DEVICES: dict[str, Device] = {
    "centre_01": Device((1.00, 0.97, 0.95), 1.00, 0.0, 2.0, 0.25, False),
    "centre_02": Device((1.06, 0.95, 0.88), 1.00, 0.6, 2.5, 0.35, False),
    "centre_03": Device((0.94, 1.00, 1.06), 1.05, 0.0, 2.0, 0.20, True),
    "centre_04": Device((1.02, 1.00, 0.93), 0.95, 1.1, 3.0, 0.30, False),
    "centre_05": Device((0.98, 0.95, 1.00), 1.12, 0.3, 2.5, 0.40, False),
    "centre_06": Device((1.00, 1.01, 0.99), 0.90, 0.0, 1.5, 0.15, True),
    "isic": Device((1.00, 0.94, 0.93), 1.00, 0.2, 1.5, 0.15, True),
}

#: 256 standard-normal quantiles: a uint8 draw indexes them (4x faster than standard_normal).
_GAUSS_LUT = np.array([NormalDist().inv_cdf((k + 0.5) / 256) for k in range(256)], dtype=np.float32)


def _hairs(img: np.ndarray, rng: np.random.Generator, size: int, s: float) -> None:
    n_h = int(rng.choice([0, 0, 1, 2, 3, 5, 8]))
    if n_h == 0:
        return
    canvas = np.zeros((size, size), np.float32)
    for _ in range(n_h):
        p0 = rng.uniform(-0.1, 1.1, 2) * size
        p2 = rng.uniform(-0.1, 1.1, 2) * size
        p1 = (p0 + p2) / 2 + rng.normal(0, 0.15 * size, 2)
        t = np.linspace(0, 1, 24)[:, None]
        pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2
        cv2.polylines(canvas, [np.round(pts * 4).astype(np.int32)], False, float(rng.uniform(0.6, 0.95)),
                      max(1, iround(rng.uniform(0.8, 1.8) * s)), cv2.LINE_AA, shift=2)
    blend(img, np.clip(canvas, 0, 1), jitter_color(rng, (45, 32, 25), 12))


@lru_cache(maxsize=16)
def _gamma_lut(gamma: float) -> np.ndarray:
    return np.clip(np.round(255.0 * (np.arange(256) / 255.0) ** gamma), 0, 255).astype(np.uint8)


def render(rng: np.random.Generator, patterns, size: int = 256, source: str = "centre_01"):
    """Draw one image.

    Returns ``(rgb uint8 (size, size, 3), lesion bool (size, size), {code: bool mask})`` with a mask for
    every code whose entry in ``patterns`` (CODES order) is non-zero.
    """
    S = int(size)
    s = S / 256.0
    dev = DEVICES.get(source, DEVICES["centre_01"])
    # independent sub-streams per stage: adding or removing one pattern changes nothing else in the image
    keys = [int(k) for k in rng.integers(0, 2 ** 62, size=4)]
    post_rng = np.random.default_rng(keys[1])
    yy, xx = grid(S)

    # --- skin
    tone = rng.uniform(0, 1)
    skin = np.array([235, 196, 172], np.float32) * (1 - tone) + np.array([196, 142, 112], np.float32) * tone
    skin += rng.uniform(-8, 8, 3).astype(np.float32)
    img = np.empty((S, S, 3), np.float32)
    img[:] = skin
    img += (smooth_noise(rng, S, 6) * 8)[..., None]
    img += (smooth_noise(rng, S, max(8, S // 6)) * 3)[..., None]
    gang = rng.uniform(0, 2 * np.pi)
    grad = ((xx - S / 2) * np.cos(gang) + (yy - S / 2) * np.sin(gang)) * (rng.uniform(0.05, 0.2) / S)
    r2 = ((xx - S / 2) ** 2 + (yy - S / 2) ** 2) * (1.0 / (0.5 * S) ** 2)
    light = (1 + grad) * (1 - dev.vignette * np.clip(r2 * 0.5, 0, 1) ** 1.5)  # applied at the end

    # --- lesion
    R = S * rng.uniform(0.24, 0.36)
    cx = S / 2 + rng.uniform(-0.1, 0.1) * S
    cy = S / 2 + rng.uniform(-0.1, 0.1) * S
    lesion = blob(rng, S, cx, cy, R, rough=0.14)
    lesion_alpha = soften(lesion, rng.uniform(2.0, 5.0) * s)
    lt = rng.uniform(0, 1)
    lcol = np.array([188, 138, 105], np.float32) * (1 - lt) + np.array([105, 65, 45], np.float32) * lt
    if rng.random() < 0.25:
        lcol = lcol * 0.6 + np.array([200, 130, 125], np.float32) * 0.4  # pinkish lesion
    lcol += rng.uniform(-10, 10, 3).astype(np.float32)
    ltex = smooth_noise(rng, S, max(6, S // 16))[..., None] * 14 + smooth_noise(rng, S, 4)[..., None] * 10
    blend(img, lesion_alpha * rng.uniform(0.75, 0.95), lcol[None, None, :] + ltex)
    ctx = LesionContext(S, s, cx, cy, R, lesion, lesion_alpha, rng)

    draw_confounders(img, dataclasses.replace(ctx, rng=np.random.default_rng(keys[2])))
    present = [c for c, v in zip(CODES, patterns) if v]
    masks: dict[str, np.ndarray] = {}
    for c in PAINT_ORDER:
        if c in present:
            prng = np.random.default_rng([keys[3], CODES.index(c)])
            faint = prng.random() < FAINT_RATE[c]
            strength = prng.uniform(0.35, 0.6) if faint else prng.uniform(0.75, 1.0)
            m = DRAWERS[c](img, dataclasses.replace(ctx, rng=prng, strength=float(strength)))
            if not m.any():  # degenerate (tiny image): fall back to a disc at the lesion centre
                m = ((xx - cx) ** 2 + (yy - cy) ** 2 < (0.15 * R) ** 2) & lesion
                if not m.any():
                    m = lesion.copy()
            masks[c] = m

    # --- hairs, illumination, device
    rng = post_rng
    _hairs(img, rng, S, s)
    img *= light[..., None] * np.asarray(dev.gains, np.float32)
    if dev.blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), dev.blur * s)
    if dev.aperture:
        rad = rng.uniform(0.62, 0.75) * S
        img *= soften(r2 < (rad / (0.5 * S)) ** 2, 2 * s)[..., None]
    img += _GAUSS_LUT[rng.integers(0, 256, (S, S, 3), dtype=np.uint8)] * np.float32(dev.noise)
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    if dev.gamma != 1.0:
        out = cv2.LUT(out, _gamma_lut(dev.gamma))
    return out, lesion, masks
