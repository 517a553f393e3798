"""One synthetic dermoscopic image: skin, lesion, confounders, patterns, hairs and the device's look.

The *scene* (skin, lesion, confounders) is drawn first and the *finish* (hairs, illumination, the device's
colour cast, aperture, noise and gamma) last; neither depends on the patterns, which are painted between
them, each only inside its mask, and the finish works pixel by pixel. So the
same image without its patterns (the *twin*) differs from it exactly inside the pattern masks, and is
obtained by finishing a copy of the scene.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import NamedTuple

import cv2
import numpy as np

from bcc.core.patterns import CODES
from bcc.data.synthetic.patterns import DRAWERS, FAINT_RATE, PAINT_ORDER, draw_confounders
from bcc.data.synthetic.shapes import (
    Lesion,
    LesionContext,
    blend,
    blob,
    grid,
    iround,
    jitter_color,
    paint,
    smooth_noise,
    soften,
)

#: lesion centre: uniform within +-LESION_SHIFT x size of the image centre, on each axis
LESION_SHIFT = 0.25
#: lesion radius range, as a fraction of the image side (small enough to stay mostly in the frame)
LESION_RADIUS = (0.18, 0.26)


@dataclass(frozen=True)
class Device:
    gains: tuple[float, float, float]  # RGB multiplicative colour cast
    gamma: float
    blur: float  # Gaussian sigma in units of size/256, applied to every drawn layer
    noise: float  # Gaussian noise sigma (0-255 scale)
    vignette: float  # 0..1 darkening at the corners
    aperture: bool  # dark circular dermatoscope aperture


#: one device per centre; an ``isic`` image is shot with a centre's device (``labels.sample_devices``)
DEVICES: dict[str, Device] = {
    "centre_01": Device((1.00, 0.97, 0.95), 1.00, 0.0, 2.0, 0.25, False),
    "centre_02": Device((1.06, 0.95, 0.88), 1.00, 0.6, 2.5, 0.35, False),
    "centre_03": Device((0.94, 1.00, 1.06), 1.05, 0.0, 2.0, 0.20, True),
    "centre_04": Device((1.02, 1.00, 0.93), 0.95, 0.9, 3.0, 0.30, False),
    "centre_05": Device((0.98, 0.95, 1.00), 1.12, 0.3, 2.5, 0.40, False),
    "centre_06": Device((1.00, 1.01, 0.99), 0.90, 0.0, 1.5, 0.15, True),
}

#: 256 standard-normal quantiles: a uint8 draw indexes them (faster than standard_normal: docs/speed.md).
_GAUSS_LUT = np.array([NormalDist().inv_cdf((k + 0.5) / 256) for k in range(256)], dtype=np.float32)


class Rendering(NamedTuple):
    rgb: np.ndarray  # uint8 (size, size, 3)
    lesion: np.ndarray  # bool (size, size): the pixels the lesion painted
    masks: dict[str, np.ndarray]  # code -> bool (size, size): the pixels that pattern painted
    twin: np.ndarray | None  # uint8: the same image without its patterns (render(..., twin=True))


@dataclass(frozen=True)
class _Finish:
    """What comes after the patterns, drawn once and applied to the image and its twin alike."""

    hair_alpha: np.ndarray | None
    hair_color: np.ndarray
    factor: np.ndarray  # (S, S, 3) illumination x colour cast x aperture
    noise: np.ndarray  # (S, S, 3)
    gamma: float

    def apply(self, img: np.ndarray) -> np.ndarray:
        if self.hair_alpha is not None:
            blend(img, self.hair_alpha, self.hair_color)
        img *= self.factor
        img += self.noise
        np.clip(img, -0.5, 254.5, out=img)
        img += 0.5
        out: np.ndarray = img.astype(np.uint8)
        if self.gamma != 1.0:
            out = cv2.LUT(out, _gamma_lut(self.gamma))
        return out


@lru_cache(maxsize=8)
def _radius2(size: int) -> np.ndarray:
    """Squared distance to the image centre, in units of half the side."""
    yy, xx = grid(size)
    r2 = ((xx - size / 2) ** 2 + (yy - size / 2) ** 2) * (1.0 / (0.5 * size) ** 2)
    r2.setflags(write=False)
    return r2


@lru_cache(maxsize=16)
def _vignette(size: int, strength: float) -> np.ndarray:
    v = (1 - strength * np.clip(_radius2(size) * 0.5, 0, 1) ** 1.5).astype(np.float32)
    v.setflags(write=False)
    return v


@lru_cache(maxsize=16)
def _gamma_lut(gamma: float) -> np.ndarray:
    return np.clip(np.round(255.0 * (np.arange(256) / 255.0) ** gamma), 0, 255).astype(np.uint8)


def _hairs(rng: np.random.Generator, size: int, s: float, blur: float) -> np.ndarray | None:
    n_h = int(rng.choice([0, 0, 1, 2, 3, 5, 8]))
    if n_h == 0:
        return None
    canvas = np.zeros((size, size), np.float32)
    for _ in range(n_h):
        p0 = rng.uniform(-0.1, 1.1, 2) * size
        p2 = rng.uniform(-0.1, 1.1, 2) * size
        p1 = (p0 + p2) / 2 + rng.normal(0, 0.15 * size, 2)
        t = np.linspace(0, 1, 24)[:, None]
        pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2
        cv2.polylines(canvas, [np.round(pts * 4).astype(np.int32)], False, float(rng.uniform(0.6, 0.95)),
                      max(1, iround(rng.uniform(0.8, 1.8) * s)), cv2.LINE_AA, shift=2)
    return np.clip(soften(canvas, blur), 0, 1)


def _finish(rng: np.random.Generator, dev: Device, S: int, grad: np.ndarray) -> _Finish:
    s = S / 256.0
    hair_alpha = _hairs(rng, S, s, dev.blur * s)
    hair_color = jitter_color(rng, (45, 32, 25), 12)
    light = (1 + grad) * _vignette(S, dev.vignette)
    if dev.aperture:
        rad = rng.uniform(0.62, 0.75) * S
        light *= soften(_radius2(S) < (rad / (0.5 * S)) ** 2, 2 * s)
    factor = light[..., None] * np.asarray(dev.gains, np.float32)
    noise = (_GAUSS_LUT * np.float32(dev.noise))[rng.integers(0, 256, (S, S, 3), dtype=np.uint8)]
    return _Finish(hair_alpha, hair_color, factor, noise, dev.gamma)


def render(rng: np.random.Generator, patterns, size: int = 256, device: str = "centre_01",
           twin: bool = False) -> Rendering:
    """Draw one image with the patterns whose entry in ``patterns`` (CODES order) is non-zero.

    ``device``: a key of ``DEVICES``. With ``twin``, also the same image drawn without its patterns.
    """
    S = int(size)
    s = S / 256.0
    dev = DEVICES[device]
    # independent sub-streams per stage: adding or removing one pattern changes nothing else in the image
    keys = [int(k) for k in rng.integers(0, 2 ** 62, size=3)]
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

    # --- lesion: anywhere in the frame
    R = S * rng.uniform(*LESION_RADIUS)
    cx, cy = S / 2 + rng.uniform(-LESION_SHIFT, LESION_SHIFT, 2) * S
    edge = rng.uniform(2.0, 5.0) * s
    lesion = Lesion.of(soften(blob(rng, S, cx, cy, R, rough=0.14), float(np.hypot(edge, dev.blur * s))))
    lt = rng.uniform(0, 1)
    lcol = np.array([188, 138, 105], np.float32) * (1 - lt) + np.array([105, 65, 45], np.float32) * lt
    if rng.random() < 0.25:
        lcol = lcol * 0.6 + np.array([200, 130, 125], np.float32) * 0.4  # pinkish lesion
    lcol += rng.uniform(-10, 10, 3).astype(np.float32)
    ltex = smooth_noise(rng, S, max(6, S // 16))[..., None] * 14 + smooth_noise(rng, S, 4)[..., None] * 10
    paint(img, lesion.shape, lcol[None, None, :] + ltex, rng.uniform(0.75, 0.95))
    ctx = LesionContext(S, s, R, lesion, dev.blur * s, rng)

    draw_confounders(img, dataclasses.replace(ctx, rng=np.random.default_rng(keys[1])))
    scene = img.copy() if twin else None
    masks: dict[str, np.ndarray] = {}
    for c in PAINT_ORDER:
        if patterns[CODES.index(c)]:
            prng = np.random.default_rng([keys[2], CODES.index(c)])
            faint = prng.random() < FAINT_RATE[c]
            strength = prng.uniform(0.35, 0.6) if faint else prng.uniform(0.75, 1.0)
            masks[c] = DRAWERS[c](img, dataclasses.replace(ctx, rng=prng, strength=float(strength)))

    finish = _finish(np.random.default_rng(keys[0]), dev, S, grad)
    rgb = finish.apply(img)
    return Rendering(rgb, lesion.mask, {c: masks[c] for c in CODES if c in masks},
                     finish.apply(scene) if scene is not None else None)
