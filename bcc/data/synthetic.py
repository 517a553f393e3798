"""Embedded synthetic dermoscopy dataset: BCC patterns, four noisy raters, masks.

``generate(out, n=1559, size=256, seed=0)`` writes a dataset directory that follows the dataset
contract in DESIGN.md, so every consumer reads it exactly like a real one::

    out/
      images.csv       image_id,image,source         image = images/<image_id>.png
      annotations.csv  image_id,rater,PN,U,ON,MG,ML,SW,AT   4 raters x n rows, 1/0, blank = not rated
      truth.csv        image_id,PN,...,AT             the true 0/1 patterns the images were drawn from
      raters.csv       rater,code,sensitivity,specificity   parameters used to simulate each rater
      images/<image_id>.png
      masks/<image_id>.png, masks/<image_id>_<CODE>.png   (XAI subset only, see below)

Labels (``sample_truth``)
    Counts follow the paper's Table 2 scaled to ``n`` (exact at n=1559): BCC 775 / non-BCC 784;
    PN 557, U 385, ON 333, MG 191, ML 244, SW 178, AT 455. PN is never drawn together with a BCC
    pattern; every BCC image has at least one BCC pattern; the remaining non-BCC images (784-557=227)
    form a nevus-like group with no pattern. BCC patterns co-occur through a latent subtype
    (pigmented BCC favours ON/MG/ML/SW, nodular/ulcerated favours AT/U). The BCC label is
    ``bcc.patterns.clinical_rule(truth)`` (no biopsy column is written).

Sources
    ``source`` is one of ``centre_01``..``centre_06`` (simulated primary-care centres, each with its own
    device look: colour cast, gamma, focus, noise, vignetting, sometimes a dark dermatoscope aperture) or
    ``isic`` for a public-archive-like nevus subset (136 of the non-BCC images at n=1559, drawn 60 %
    from the no-pattern group and 40 % from the PN group). Centres are independent of the label; ``isic``
    implies non-BCC, as in the paper's data.

Raters (``RATERS``, ``simulate_raters``)
    Four raters ``derm_1..derm_4`` rate every image. ``derm_4`` is clearly worse (sens/spec 0.70-0.75);
    the others lie in 0.85-0.95 and vary per code. ``derm_2`` leaves ~10 % of its cells blank.
    Errors are independent across raters and codes (the Dawid-Skene assumption) and are drawn with exact
    counts: among the cells a rater did rate, exactly ``round(sens * positives)`` true positives are
    marked 1 and ``round(spec * negatives)`` true negatives are marked 0 (which cells is random). The
    realised rates therefore equal ``raters.csv`` up to rounding, so an EM estimate can be checked
    against it tightly even for rare codes.

Images (``render``)
    Skin-toned background with smooth texture, illumination gradient, vignetting and random hairs; one
    irregular brownish lesion with varying size, position and colour; each present pattern is drawn as
    a localized texture inside the lesion with its own mask: PN reticular brown network, U dark
    red-brown crust, ON blue-grey ovoids, MG clustered small blue-grey globules, ML peripheral leaf-like
    lobes, SW radial spokes around a dark hub, AT branching red vessels. Size, contrast, position and
    colour vary per image, and a share of instances is faint (``FAINT_RATE``: 15 % for PN and AT, 35 %
    for SW, MG and ML, which are also smaller), so the rare codes are harder. Label-independent
    confounders (brown dots, dotted and short linear vessels, a small blood spot, a diffuse blue-grey
    veil) resemble the patterns without being them, so the task is not trivial. Every stage of an image
    (background and lesion, confounders, each pattern, hairs and device) has its own random sub-stream:
    removing one pattern from the label vector leaves the rest of the image unchanged.

Masks
    Written only for the XAI subset, like the paper's 334 segmented images: ``round(n * 334 / 1559)``
    images drawn at random among the images with at least one true pattern (BCC images and PN images).
    For each such image, ``masks/<id>_<CODE>.png`` for every present pattern and ``masks/<id>.png``
    as their union; uint8 0/255, same size as the image, always non-empty and inside the lesion.
    Consumers find the subset by file existence.

Determinism and atomicity
    Image ``i`` is drawn from ``np.random.default_rng([seed, i])`` given its labels; labels, sources and
    rater noise from a separate global stream. PNGs are written with fixed compression parameters and no
    metadata, CSVs with ``\\n`` line ends, so the same ``(n, size, seed)`` gives byte-identical files
    (whatever the number of workers). Everything is written into a temporary sibling directory that is
    renamed onto ``out`` only when complete; on error it is removed and an existing ``out`` is left as
    it was. An existing ``out`` is replaced.

CLI: ``python -m bcc.data.synthetic --out DIR [--n 1559] [--size 256] [--seed 0]``.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from statistics import NormalDist

import cv2
import numpy as np

from bcc.patterns import BCC_CODES, CODES, clinical_rule

# ----------------------------------------------------------------------------------------------------
# Constants
# ----------------------------------------------------------------------------------------------------
PAPER_N = 1559
PAPER_BCC = 775
PAPER_COUNTS: dict[str, int] = {"PN": 557, "U": 385, "ON": 333, "MG": 191, "ML": 244, "SW": 178, "AT": 455}
PAPER_XAI = 334
PAPER_ISIC = 136

RATER_NAMES: tuple[str, ...] = ("derm_1", "derm_2", "derm_3", "derm_4")
#: rater -> (sensitivity per code, specificity per code), codes in CODES order.
RATERS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "derm_1": ((0.92, 0.90, 0.88, 0.86, 0.87, 0.85, 0.93), (0.95, 0.94, 0.93, 0.94, 0.93, 0.95, 0.92)),
    "derm_2": ((0.90, 0.87, 0.91, 0.85, 0.86, 0.88, 0.90), (0.93, 0.95, 0.92, 0.95, 0.94, 0.93, 0.94)),
    "derm_3": ((0.88, 0.92, 0.86, 0.89, 0.85, 0.86, 0.89), (0.94, 0.92, 0.95, 0.92, 0.95, 0.94, 0.93)),
    "derm_4": ((0.75, 0.72, 0.74, 0.70, 0.73, 0.71, 0.75), (0.74, 0.75, 0.72, 0.73, 0.71, 0.74, 0.72)),
}
#: rater -> fraction of its cells left blank.
BLANK_RATE: dict[str, float] = {"derm_1": 0.0, "derm_2": 0.10, "derm_3": 0.0, "derm_4": 0.0}

CENTRES: tuple[str, ...] = tuple(f"centre_{k:02d}" for k in range(1, 7))
CENTRE_WEIGHTS = np.array([0.24, 0.20, 0.16, 0.15, 0.14, 0.11])


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

PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
MASK_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3, cv2.IMWRITE_PNG_BILEVEL, 0]

#: 256 standard-normal quantiles: a uint8 draw indexes them (4x faster than standard_normal).
_GAUSS_LUT = np.array([NormalDist().inv_cdf((k + 0.5) / 256) for k in range(256)], dtype=np.float32)

_C = {c: k for k, c in enumerate(CODES)}


def _i(x) -> int:
    """Nearest int (cv2 wants Python ints for coordinates and sizes)."""
    return int(np.rint(x))


def scaled_counts(n: int) -> dict[str, int]:
    """Table-2 counts scaled to ``n``: keys ``bcc``, ``pn``, ``nevus``, ``xai``, ``isic`` and the codes."""
    f = n / PAPER_N
    n_bcc = min(n, _i(PAPER_BCC * f))
    n_pn = min(n - n_bcc, _i(PAPER_COUNTS["PN"] * f))
    out = {"bcc": n_bcc, "pn": n_pn, "nevus": n - n_bcc - n_pn}
    for c in BCC_CODES:
        out[c] = min(n_bcc, _i(PAPER_COUNTS[c] * f))
    out["PN"] = n_pn
    out["xai"] = _i(PAPER_XAI * f)
    out["isic"] = min(n - n_bcc, _i(PAPER_ISIC * f))
    return out


# ----------------------------------------------------------------------------------------------------
# Labels, sources, raters
# ----------------------------------------------------------------------------------------------------
def _global_rng(seed: int, n: int, stream: int) -> np.random.Generator:
    # 4-word entropy: never equal to a per-image [seed, i] stream.
    return np.random.default_rng([seed, 0x5EED, 0xBCC + stream, n])


def sample_truth(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 7) int array of true patterns in CODES order with the Table-2 counts scaled to n."""
    k = scaled_counts(n)
    truth = np.zeros((n, len(CODES)), dtype=np.int64)
    order = rng.permutation(n)
    bcc_idx = order[: k["bcc"]]
    pn_idx = order[k["bcc"]: k["bcc"] + k["pn"]]
    truth[pn_idx, _C["PN"]] = 1
    nb = len(bcc_idx)
    if nb:
        # latent subtype: 1 = pigmented (ON, MG, ML, SW), 0 = nodular / ulcerated (AT, U)
        pig = rng.random(nb) < 0.5
        affinity = {"U": (1.6, 0.7), "AT": (1.6, 0.7), "ON": (0.6, 1.6), "MG": (0.6, 1.6),
                    "ML": (0.6, 1.6), "SW": (0.6, 1.6)}
        sub = np.zeros((nb, len(BCC_CODES)), dtype=np.int64)
        for j, c in enumerate(BCC_CODES):
            w = np.where(pig, affinity[c][1], affinity[c][0])
            # ON & MG belong together; so do AT & U (through the subtype)
            pick = rng.choice(nb, size=k[c], replace=False, p=w / w.sum())
            sub[pick, j] = 1
        # every BCC image needs a pattern: move one from an image that has >= 2 of the same code
        for r in np.flatnonzero(sub.sum(1) == 0):
            for j in rng.permutation(len(BCC_CODES)):
                donors = np.flatnonzero((sub[:, j] == 1) & (sub.sum(1) >= 2))
                if len(donors):
                    d = donors[rng.integers(len(donors))]
                    sub[d, j], sub[r, j] = 0, 1
                    break
            else:  # too few patterns in total (tiny n): add one
                sub[r, rng.integers(len(BCC_CODES))] = 1
        truth[np.ix_(bcc_idx, [_C[c] for c in BCC_CODES])] = sub
    return truth


def sample_sources(truth: np.ndarray, rng: np.random.Generator) -> list[str]:
    n = len(truth)
    k = scaled_counts(n)
    src = np.array(CENTRES)[rng.choice(len(CENTRES), size=n, p=CENTRE_WEIGHTS / CENTRE_WEIGHTS.sum())]
    src = src.astype(object)
    none = np.flatnonzero(truth.sum(1) == 0)
    pn = np.flatnonzero(truth[:, _C["PN"]] == 1)
    n_none = min(len(none), _i(0.6 * k["isic"]))
    n_pn = min(len(pn), k["isic"] - n_none)
    isic = np.concatenate([rng.choice(none, n_none, replace=False), rng.choice(pn, n_pn, replace=False)])
    src[isic.astype(int)] = "isic"
    return [str(s) for s in src]


def sample_xai(truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Boolean (n,) array: images whose masks are written (the segmented XAI subset)."""
    cand = np.flatnonzero(truth.sum(1) > 0)
    k = min(len(cand), scaled_counts(len(truth))["xai"])
    out = np.zeros(len(truth), dtype=bool)
    out[rng.choice(cand, k, replace=False)] = True
    return out


def simulate_raters(truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n_raters, n, 7) float array: 1/0 ratings, NaN = left blank. Exact-count errors, see module doc."""
    n, m = truth.shape
    out = np.full((len(RATER_NAMES), n, m), np.nan)
    for r, name in enumerate(RATER_NAMES):
        sens, spec = RATERS[name]
        rated = rng.random((n, m)) >= BLANK_RATE[name]
        for j in range(m):
            col = out[r, :, j]
            pos = np.flatnonzero(rated[:, j] & (truth[:, j] == 1))
            neg = np.flatnonzero(rated[:, j] & (truth[:, j] == 0))
            col[pos] = 0.0
            col[rng.choice(pos, _i(sens[j] * len(pos)), replace=False)] = 1.0
            col[neg] = 1.0
            col[rng.choice(neg, _i(spec[j] * len(neg)), replace=False)] = 0.0
    return out


# ----------------------------------------------------------------------------------------------------
# Rendering helpers
# ----------------------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise in about [-1, 1] with ~``cells`` features across the image."""
    small = rng.standard_normal((cells + 3, cells + 3)).astype(np.float32)
    big = cv2.resize(small, (size + 2 * (size // cells), size + 2 * (size // cells)), interpolation=cv2.INTER_CUBIC)
    o = size // cells
    return np.ascontiguousarray(big[o: o + size, o: o + size]) * 0.6


def _blend(img: np.ndarray, alpha: np.ndarray, color) -> None:
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


def _blob(rng: np.random.Generator, size: int, cx: float, cy: float, radius: float, rough: float = 0.12,
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


def _soft(mask: np.ndarray, sigma: float) -> np.ndarray:
    m = mask.astype(np.float32)
    if sigma <= 0.3:
        return m
    return cv2.GaussianBlur(m, (0, 0), sigma)


def _jitter_color(rng: np.random.Generator, base, spread: float) -> np.ndarray:
    return np.clip(np.asarray(base, dtype=np.float32) + rng.uniform(-spread, spread, 3), 0, 255).astype(np.float32)


@dataclass
class _Ctx:
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
            xi, yi = _i(x), _i(y)
            if 0 <= xi < self.size and 0 <= yi < self.size and self.lesion[yi, xi]:
                return x, y
        return self.cx, self.cy


# ----------------------------------------------------------------------------------------------------
# Pattern drawers: each blends into img (float32 RGB, 0-255) and returns its boolean region mask.
# ----------------------------------------------------------------------------------------------------
def draw_pn(img: np.ndarray, ctx: _Ctx) -> np.ndarray:
    """Pigment network: irregular, patchy reticular grid of brown lines over a large part of the lesion."""
    rng, S, s = ctx.rng, ctx.size, ctx.s
    x0, y0 = ctx.point(0.35)
    region = _blob(rng, S, x0, y0, ctx.R * rng.uniform(0.55, 0.95), rough=0.18) & ctx.lesion
    yy, xx = _grid(S)
    cell = rng.uniform(8.0, 14.0) * s
    phi = rng.uniform(0, np.pi)
    fine = max(6, int(S / (1.5 * cell)))
    wu = cell * (0.35 * _smooth_noise(rng, S, 5) + 0.18 * _smooth_noise(rng, S, fine))
    wv = cell * (0.35 * _smooth_noise(rng, S, 5) + 0.18 * _smooth_noise(rng, S, fine))
    u = (xx * np.cos(phi) + yy * np.sin(phi) + wu) / cell
    v = (-xx * np.sin(phi) + yy * np.cos(phi) + wv) / cell
    v = v + 0.5 * (np.floor(u) % 2)  # brick offset -> honeycomb-like holes
    d = np.minimum(np.abs(u - np.round(u)), np.abs(v - np.round(v))) * cell
    width = rng.uniform(0.9, 1.7) * s * (1 + 0.3 * _smooth_noise(rng, S, 8))
    lines = np.exp(-((d / width) ** 2))
    patchy = np.clip(0.75 + 0.6 * _smooth_noise(rng, S, 7), 0.15, 1.0)  # broken, uneven network
    contrast = rng.uniform(0.45, 0.85) * ctx.strength
    fade = _soft(region, 5 * s)
    alpha = lines * patchy * fade * contrast * ctx.lesion_alpha
    _blend(img, alpha, _jitter_color(rng, (75, 45, 30), 15))
    return region


def draw_u(img: np.ndarray, ctx: _Ctx) -> np.ndarray:
    """Ulceration: dark red-brown crust with a rough surface, sometimes an orange-yellow rim."""
    rng, S, s = ctx.rng, ctx.size, ctx.s
    x0, y0 = ctx.point(0.55)
    region = _blob(rng, S, x0, y0, ctx.R * rng.uniform(0.12, 0.32), rough=0.25) & ctx.lesion
    soft = _soft(region, 1.5 * s)
    if rng.random() < 0.5:
        rim = _soft(cv2.dilate(region.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0, 1.5 * s) - soft
        _blend(img, np.clip(rim, 0, 1) * 0.6 * ctx.strength, _jitter_color(rng, (200, 150, 80), 20))
    tex = _smooth_noise(rng, S, max(8, S // 10))[..., None] * 25
    col = _jitter_color(rng, (115, 38, 30), 20)[None, None, :] + tex
    _blend(img, soft * rng.uniform(0.6, 0.95) * ctx.strength, col)
    return region


def draw_on(img: np.ndarray, ctx: _Ctx) -> np.ndarray:
    """Ovoid nests: a few large blue-grey ovoid blotches."""
    rng, S, s = ctx.rng, ctx.size, ctx.s
    canvas = np.zeros((S, S), np.float32)
    x0, y0 = ctx.point(0.5)
    for _ in range(rng.integers(1, 5)):
        x = x0 + rng.normal(0, 0.18 * ctx.R)
        y = y0 + rng.normal(0, 0.18 * ctx.R)
        a = ctx.R * rng.uniform(0.12, 0.24)
        b = a * rng.uniform(0.5, 0.8)
        cv2.ellipse(canvas, (_i(x), _i(y)), (max(2, int(a)), max(1, int(b))),
                    float(rng.uniform(0, 180)), 0, 360, 1.0, -1, cv2.LINE_AA)
    region = (canvas > 0.5) & ctx.lesion
    alpha = _soft(canvas, 1.8 * s) * rng.uniform(0.5, 0.85) * ctx.strength * ctx.lesion_alpha
    tex = _smooth_noise(rng, S, max(8, S // 12))[..., None] * 12
    _blend(img, alpha, _jitter_color(rng, (95, 108, 128), 18)[None, None, :] + tex)
    return region


def draw_mg(img: np.ndarray, ctx: _Ctx) -> np.ndarray:
    """Multiglobules: a cluster of small blue-grey globules (fainter, smaller than ON)."""
    rng, S, s = ctx.rng, ctx.size, ctx.s
    canvas = np.zeros((S, S), np.float32)
    x0, y0 = ctx.point(0.55)
    spread = ctx.R * rng.uniform(0.12, 0.22)
    pts = []
    for _ in range(rng.integers(7, 18)):
        x = x0 + rng.normal(0, spread)
        y = y0 + rng.normal(0, spread)
        r = max(1.0, ctx.R * rng.uniform(0.035, 0.06))
        cv2.circle(canvas, (_i(x), _i(y)), _i(r), 1.0, -1, cv2.LINE_AA)
        pts.append((x, y))
    hull = np.zeros((S, S), np.uint8)
    pts_a = np.round(np.array(pts)).astype(np.int32)
    cv2.fillConvexPoly(hull, cv2.convexHull(pts_a), 1)
    region = ((cv2.dilate(hull, np.ones((3, 3), np.uint8), iterations=max(1, int(2 * s))) > 0) | (canvas > 0.5))
    region &= ctx.lesion
    alpha = _soft(canvas, 0.7 * s) * rng.uniform(0.4, 0.75) * ctx.strength * ctx.lesion_alpha
    _blend(img, alpha, _jitter_color(rng, (92, 100, 122), 18))
    return region


def draw_ml(img: np.ndarray, ctx: _Ctx) -> np.ndarray:
    """Maple-leaf-like areas: 3-6 separate bulbous lobes side by side at the lesion periphery, pointing out."""
    rng, S, s = ctx.rng, ctx.size, ctx.s
    canvas = np.zeros((S, S), np.float32)
    ang0 = rng.uniform(0, 2 * np.pi)
    base_r = ctx.R * rng.uniform(0.5, 0.62)
    n_lobes = int(rng.integers(3, 7))
    width = ctx.R * rng.uniform(0.045, 0.075)
    step = 2.6 * width / base_r
    for k in range(n_lobes):
        a = ang0 + step * (k - (n_lobes - 1) / 2) + rng.normal(0, 0.05)
        length = ctx.R * rng.uniform(0.16, 0.3)
        w = width * rng.uniform(0.8, 1.25)
        r_mid = base_r + 0.5 * length
        mx, my = ctx.cx + r_mid * np.cos(a), ctx.cy + r_mid * np.sin(a)
        cv2.ellipse(canvas, (_i(mx), _i(my)), (max(2, int(length * 0.5)), max(1, _i(w))),
                    float(np.degrees(a)), 0, 360, 1.0, -1, cv2.LINE_AA)
        tip = r_mid + 0.4 * length  # bulbous outer end
        cv2.circle(canvas, (_i(ctx.cx + tip * np.cos(a)), _i(ctx.cy + tip * np.sin(a))),
                   max(1, _i(w * 1.3)), 1.0, -1, cv2.LINE_AA)
    canvas *= ctx.lesion_alpha
    region = (canvas > 0.5) & ctx.lesion
    alpha = _soft(canvas, 1.0 * s) * rng.uniform(0.4, 0.7) * ctx.strength
    _blend(img, alpha, _jitter_color(rng, (85, 80, 98), 18))
    return region


def draw_sw(img: np.ndarray, ctx: _Ctx) -> np.ndarray:
    """Spoke-wheel: radial projections around a darker central hub (small, faint)."""
    rng, S, s = ctx.rng, ctx.size, ctx.s
    canvas = np.zeros((S, S), np.float32)
    x0, y0 = ctx.point(0.55)
    hub = max(1.5, ctx.R * rng.uniform(0.04, 0.07))
    length = ctx.R * rng.uniform(0.13, 0.22)
    n_sp = int(rng.integers(7, 13))
    th = max(1, _i(rng.uniform(1.0, 2.0) * s))
    a0 = rng.uniform(0, 2 * np.pi)
    for k in range(n_sp):
        a = a0 + 2 * np.pi * k / n_sp + rng.normal(0, 0.12)
        ln = length * rng.uniform(0.75, 1.1)
        p0 = (_i(x0 + hub * np.cos(a)), _i(y0 + hub * np.sin(a)))
        p1 = (_i(x0 + (hub + ln) * np.cos(a)), _i(y0 + (hub + ln) * np.sin(a)))
        cv2.line(canvas, p0, p1, 0.85, th, cv2.LINE_AA)
        cv2.circle(canvas, p1, max(1, th), 0.85, -1, cv2.LINE_AA)  # club-shaped tips
    spokes = _soft(canvas, 0.6 * s) * rng.uniform(0.4, 0.65) * ctx.strength
    hubc = np.zeros((S, S), np.float32)
    cv2.circle(hubc, (_i(x0), _i(y0)), _i(hub), 1.0, -1, cv2.LINE_AA)
    col = _jitter_color(rng, (85, 60, 70), 15)
    _blend(img, spokes * ctx.lesion_alpha, col)
    _blend(img, _soft(hubc, 0.8 * s) * rng.uniform(0.6, 0.8) * ctx.strength * ctx.lesion_alpha, col * 0.6)
    yy, xx = _grid(S)
    region = ((xx - x0) ** 2 + (yy - y0) ** 2 < (hub + 1.05 * length) ** 2) & ctx.lesion
    return region


def _branch(canvas, rng, x, y, ang, length, thick, depth, s):
    if depth == 0 or length < 2 * s:
        return
    pts = [(x, y)]
    for _ in range(4):  # a slightly wiggly segment
        ang += rng.normal(0, 0.25)
        x += length / 4 * np.cos(ang)
        y += length / 4 * np.sin(ang)
        pts.append((x, y))
    cv2.polylines(canvas, [np.round(np.array(pts) * 4).astype(np.int32)], False, 1.0,
                  max(1, _i(thick)), cv2.LINE_AA, shift=2)
    for sgn in (-1, 1):
        if depth > 1 and rng.random() < 0.9:
            _branch(canvas, rng, x, y, ang + sgn * rng.uniform(0.35, 0.8), length * rng.uniform(0.55, 0.75),
                    thick * 0.72, depth - 1, s)


def draw_at(img: np.ndarray, ctx: _Ctx) -> np.ndarray:
    """Arborizing telangiectasia: sharp, branching bright-red vessels of decreasing calibre."""
    rng, S, s = ctx.rng, ctx.size, ctx.s
    canvas = np.zeros((S, S), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        x, y = ctx.point(0.75, 0.2)
        ang = np.arctan2(ctx.cy - y, ctx.cx - x) + rng.normal(0, 0.8)
        _branch(canvas, rng, x, y, ang, ctx.R * rng.uniform(0.25, 0.45),
                rng.uniform(1.6, 3.0) * s * (0.55 + 0.45 * ctx.strength),
                int(rng.integers(3, 5)), s)
    canvas = np.clip(canvas, 0, 1) * ctx.lesion_alpha
    region = cv2.dilate((canvas > 0.3).astype(np.uint8), np.ones((3, 3), np.uint8),
                        iterations=max(1, _i(2 * s))) > 0
    region &= ctx.lesion
    alpha = _soft(canvas, 0.4 * s) * rng.uniform(0.7, 0.95) * ctx.strength
    _blend(img, alpha, _jitter_color(rng, (185, 35, 48), 20))
    return region


#: share of faint instances per code: rare codes are subtler (harder) than PN and AT
FAINT_RATE: dict[str, float] = {"PN": 0.15, "U": 0.2, "ON": 0.25, "MG": 0.35, "ML": 0.35, "SW": 0.35, "AT": 0.15}
DRAWERS = {"PN": draw_pn, "U": draw_u, "ON": draw_on, "MG": draw_mg, "ML": draw_ml, "SW": draw_sw, "AT": draw_at}
#: paint order: flat structures first, vessels and crust last
_ORDER = ("PN", "ML", "ON", "MG", "SW", "U", "AT")


def _distractors(img: np.ndarray, ctx: _Ctx) -> None:
    """Label-independent confounders that resemble, but are not, the coded patterns.

    Brown dots/globules (nevus; brown, not blue-grey), dotted and short linear vessels (not arborizing),
    a small dark blood spot (not a crust), a diffuse blue-grey or dark structureless veil (not ovoid).
    """
    rng, S, s = ctx.rng, ctx.size, ctx.s
    if rng.random() < 0.35:  # brown dots/globules
        canvas = np.zeros((S, S), np.float32)
        for _ in range(int(rng.integers(4, 15))):
            x, y = ctx.point(0.85)
            cv2.circle(canvas, (_i(x), _i(y)), max(1, _i(rng.uniform(1.0, 2.5) * s)),
                       1.0, -1, cv2.LINE_AA)
        _blend(img, _soft(canvas, 0.6 * s) * rng.uniform(0.4, 0.7) * ctx.lesion_alpha,
               _jitter_color(rng, (80, 50, 35), 15))
    if rng.random() < 0.25:  # dotted vessels
        canvas = np.zeros((S, S), np.float32)
        for _ in range(int(rng.integers(3, 12))):
            x, y = ctx.point(0.9)
            cv2.circle(canvas, (_i(x), _i(y)), max(1, _i(1.0 * s)), 1.0, -1, cv2.LINE_AA)
        _blend(img, _soft(canvas, 0.5 * s) * rng.uniform(0.4, 0.7) * ctx.lesion_alpha,
               _jitter_color(rng, (170, 50, 55), 15))
    if rng.random() < 0.2:  # short linear / comma vessels, unbranched
        canvas = np.zeros((S, S), np.float32)
        for _ in range(int(rng.integers(1, 5))):
            x, y = ctx.point(0.8)
            a = rng.uniform(0, 2 * np.pi)
            ln = ctx.R * rng.uniform(0.08, 0.18)
            cv2.line(canvas, (_i(x), _i(y)),
                     (_i(x + ln * np.cos(a)), _i(y + ln * np.sin(a))), 1.0,
                     max(1, _i(1.2 * s)), cv2.LINE_AA)
        _blend(img, _soft(canvas, 0.5 * s) * rng.uniform(0.4, 0.75) * ctx.lesion_alpha,
               _jitter_color(rng, (175, 45, 55), 15))
    if rng.random() < 0.1:  # small dark blood spot
        x, y = ctx.point(0.7)
        reg = _blob(rng, S, x, y, ctx.R * rng.uniform(0.05, 0.1), rough=0.15)
        _blend(img, _soft(reg, 1.0 * s) * rng.uniform(0.6, 0.85), _jitter_color(rng, (65, 22, 35), 10))
    if rng.random() < 0.3:  # structureless veil: bluish-grey or dark brown, diffuse edges
        x, y = ctx.point(0.5)
        reg = _blob(rng, S, x, y, ctx.R * rng.uniform(0.2, 0.4), rough=0.2)
        col = (130, 130, 150) if rng.random() < 0.5 else (95, 65, 50)
        _blend(img, _soft(reg, 5 * s) * rng.uniform(0.15, 0.4) * ctx.lesion_alpha, _jitter_color(rng, col, 10))


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
                      max(1, _i(rng.uniform(0.8, 1.8) * s)), cv2.LINE_AA, shift=2)
    _blend(img, np.clip(canvas, 0, 1), _jitter_color(rng, (45, 32, 25), 12))


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
    yy, xx = _grid(S)

    # --- skin
    tone = rng.uniform(0, 1)
    skin = np.array([235, 196, 172], np.float32) * (1 - tone) + np.array([196, 142, 112], np.float32) * tone
    skin += rng.uniform(-8, 8, 3).astype(np.float32)
    img = np.empty((S, S, 3), np.float32)
    img[:] = skin
    img += (_smooth_noise(rng, S, 6) * 8)[..., None]
    img += (_smooth_noise(rng, S, max(8, S // 6)) * 3)[..., None]
    gang = rng.uniform(0, 2 * np.pi)
    grad = ((xx - S / 2) * np.cos(gang) + (yy - S / 2) * np.sin(gang)) * (rng.uniform(0.05, 0.2) / S)
    r2 = ((xx - S / 2) ** 2 + (yy - S / 2) ** 2) * (1.0 / (0.5 * S) ** 2)
    light = (1 + grad) * (1 - dev.vignette * np.clip(r2 * 0.5, 0, 1) ** 1.5)  # applied at the end

    # --- lesion
    R = S * rng.uniform(0.24, 0.36)
    cx = S / 2 + rng.uniform(-0.1, 0.1) * S
    cy = S / 2 + rng.uniform(-0.1, 0.1) * S
    lesion = _blob(rng, S, cx, cy, R, rough=0.14)
    lesion_alpha = _soft(lesion, rng.uniform(2.0, 5.0) * s)
    lt = rng.uniform(0, 1)
    lcol = np.array([188, 138, 105], np.float32) * (1 - lt) + np.array([105, 65, 45], np.float32) * lt
    if rng.random() < 0.25:
        lcol = lcol * 0.6 + np.array([200, 130, 125], np.float32) * 0.4  # pinkish lesion
    lcol += rng.uniform(-10, 10, 3).astype(np.float32)
    ltex = _smooth_noise(rng, S, max(6, S // 16))[..., None] * 14 + _smooth_noise(rng, S, 4)[..., None] * 10
    _blend(img, lesion_alpha * rng.uniform(0.75, 0.95), lcol[None, None, :] + ltex)
    ctx = _Ctx(S, s, cx, cy, R, lesion, lesion_alpha, rng)

    _distractors(img, dataclasses.replace(ctx, rng=np.random.default_rng(keys[2])))
    present = [c for c, v in zip(CODES, patterns) if v]
    masks: dict[str, np.ndarray] = {}
    for c in _ORDER:
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
        img *= _soft(r2 < (rad / (0.5 * S)) ** 2, 2 * s)[..., None]
    img += _GAUSS_LUT[rng.integers(0, 256, (S, S, 3), dtype=np.uint8)] * np.float32(dev.noise)
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    if dev.gamma != 1.0:
        out = cv2.LUT(out, _gamma_lut(dev.gamma))
    return out, lesion, masks


# ----------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------
def _write_png(path: Path, arr: np.ndarray, params) -> None:
    ok, buf = cv2.imencode(".png", arr, params)
    if not ok:  # pragma: no cover
        raise RuntimeError(f"PNG encoding failed for {path}")
    path.write_bytes(buf.tobytes())


def _render_one(job) -> None:
    """Render and write image ``i`` (and its masks when in the XAI subset). Runs in workers too."""
    root, i, image_id, patterns, size, seed, source, with_masks = job
    rng = np.random.default_rng([seed, i])
    rgb, _lesion, masks = render(rng, patterns, size, source)
    root = Path(root)
    _write_png(root / "images" / f"{image_id}.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), PNG_PARAMS)
    if with_masks and masks:
        union = np.zeros((size, size), bool)
        for c in CODES:
            if c in masks:
                union |= masks[c]
                _write_png(root / "masks" / f"{image_id}_{c}.png", masks[c].astype(np.uint8) * 255, MASK_PARAMS)
        _write_png(root / "masks" / f"{image_id}.png", union.astype(np.uint8) * 255, MASK_PARAMS)


def _init_worker() -> None:
    cv2.setNumThreads(1)


def _write_csv(path: Path, header, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def _fmt(v: float) -> str:
    return "" if np.isnan(v) else str(int(v))


def generate(out: Path, n: int = 1559, size: int = 256, seed: int = 0, progress: bool = True,
             workers: int | None = None) -> Path:
    """Write the synthetic dataset into ``out`` (atomically, replacing it) and return ``out``.

    ``workers``: processes for rendering (default: 1 for n < 200, else min(cpu count, 8)); the output
    does not depend on it.
    """
    from tqdm import tqdm

    out = Path(out)
    if n < 1 or size < 32:
        raise ValueError("need n >= 1 and size >= 32")
    truth = sample_truth(n, _global_rng(seed, n, 0))
    sources = sample_sources(truth, _global_rng(seed, n, 1))
    xai = sample_xai(truth, _global_rng(seed, n, 2))
    ratings = simulate_raters(truth, _global_rng(seed, n, 3))
    ids = [f"syn_{i:05d}" for i in range(n)]

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        jobs = [(str(tmp), i, ids[i], tuple(int(v) for v in truth[i]), size, seed, sources[i], bool(xai[i]))
                for i in range(n)]
        if workers is None:
            workers = 1 if n < 200 else max(1, min(os.cpu_count() or 1, 8))
        bar = tqdm(total=n, disable=not progress, desc="synthetic", unit="img")
        if workers <= 1:
            for job in jobs:
                _render_one(job)
                bar.update()
        else:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
                for _ in pool.imap_unordered(_render_one, jobs, chunksize=8):
                    bar.update()
        bar.close()

        _write_csv(tmp / "images.csv", ["image_id", "image", "source"],
                   [(ids[i], f"images/{ids[i]}.png", sources[i]) for i in range(n)])
        _write_csv(tmp / "truth.csv", ["image_id", *CODES],
                   [(ids[i], *map(int, truth[i])) for i in range(n)])
        _write_csv(tmp / "annotations.csv", ["image_id", "rater", *CODES],
                   [(ids[i], name, *(_fmt(v) for v in ratings[r, i]))
                    for i in range(n) for r, name in enumerate(RATER_NAMES)])
        _write_csv(tmp / "raters.csv", ["rater", "code", "sensitivity", "specificity"],
                   [(name, c, f"{RATERS[name][0][j]:.2f}", f"{RATERS[name][1][j]:.2f}")
                    for name in RATER_NAMES for j, c in enumerate(CODES)])
        os.chmod(tmp, 0o755)
        old = None
        if out.exists() or out.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "d")
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def summary(out: Path) -> str:
    """A short text summary of a generated dataset (counts per code, BCC/non-BCC, masks, sources)."""
    import pandas as pd

    out = Path(out)
    truth = pd.read_csv(out / "truth.csv")
    images = pd.read_csv(out / "images.csv")
    bcc = clinical_rule(truth[list(CODES)].to_numpy())
    n_masked = len([p for p in (out / "masks").glob("*.png") if "_" not in p.stem.replace("syn_", "", 1)])
    lines = [f"{out}: {len(truth)} images, BCC {int(bcc.sum())} / non-BCC {int(len(bcc) - bcc.sum())}",
             "codes: " + ", ".join(f"{c} {int(truth[c].sum())}" for c in CODES),
             f"masks: {n_masked} images; sources: "
             + ", ".join(f"{k} {v}" for k, v in sorted(images["source"].value_counts().items()))]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bcc.data.synthetic", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n", type=int, default=PAPER_N)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None)
    a = p.parse_args(argv)
    generate(a.out, n=a.n, size=a.size, seed=a.seed, progress=True, workers=a.workers)
    print(summary(a.out))


if __name__ == "__main__":
    main()
