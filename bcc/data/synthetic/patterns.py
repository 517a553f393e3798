"""One drawer per dermoscopic code, plus the label-independent confounders that resemble them.

Each drawer paints its structure into the image (float32 RGB, 0-255) through ``shapes.paint`` and returns
the boolean mask of exactly the pixels it painted. Structures are placed anywhere on the lesion (not near
its centre) and are at least 4 px wide at 256 px (2 px at 128 px, the least a localisation run trains at):
strokes, dots and vessels of a thinner width would vanish when the image is downsampled for training.
Faintness (``ctx.strength``) lowers the opacity only, never the mask.
"""
from __future__ import annotations

import cv2
import numpy as np

from bcc.data.synthetic.shapes import (
    LesionContext,
    blob,
    grid,
    iround,
    jitter_color,
    paint,
    smooth_noise,
    soften,
)

#: narrowest structure (px at 256): strokes, dots, vessels, spokes
MIN_WIDTH = 5.0


def _width(ctx: LesionContext, w: float) -> float:
    """A full width given in px at 256, scaled to the image; never under MIN_WIDTH (at 256)."""
    return max(w, MIN_WIDTH) * ctx.s


def _lesion_width(ctx: LesionContext, f: float) -> float:
    """A full width of ``f`` lesion radii; never under MIN_WIDTH (at 256)."""
    return _width(ctx, f * ctx.R / ctx.s)


def draw_pn(img: np.ndarray, ctx: LesionContext) -> np.ndarray:
    """Pigment network: irregular, patchy reticular grid of brown lines over a large part of the lesion."""
    rng, S, s, R = ctx.rng, ctx.size, ctx.s, ctx.R
    region_r = R * rng.uniform(0.6, 0.95)
    x0, y0 = ctx.anywhere(0.2 * region_r)
    region = blob(rng, S, x0, y0, region_r, rough=0.18)
    x, y, w, h = cv2.boundingRect(region.view(np.uint8))
    sl = (slice(y, y + h), slice(x, x + w))  # the network is computed on the region's box only
    yy, xx = (g[sl] for g in grid(S))
    cell = rng.uniform(14.0, 19.0) * s
    phi = rng.uniform(0, np.pi)
    wu = cell * (0.25 * smooth_noise(rng, S, 5) + 0.1 * smooth_noise(rng, S, 12))[sl]
    wv = cell * (0.25 * smooth_noise(rng, S, 5) + 0.1 * smooth_noise(rng, S, 12))[sl]
    u = (xx * np.cos(phi) + yy * np.sin(phi) + wu) / cell
    v = (-xx * np.sin(phi) + yy * np.cos(phi) + wv) / cell
    v = v + 0.5 * (np.floor(u) % 2)  # brick offset -> honeycomb-like holes
    d = np.minimum(np.abs(u - np.round(u)), np.abs(v - np.round(v))) * cell  # px to the nearest line
    half = 0.5 * _width(ctx, rng.uniform(4.6, 5.8))
    lines = np.zeros((S, S), np.float32)
    lines[sl] = np.clip((half - d) / max(0.8 * s, 0.5) + 0.5, 0, 1) * region[sl]  # flat top, ~1 px soft edge
    shape = ctx.soft(lines, 0.5)
    patchy = np.clip(0.75 + 0.6 * smooth_noise(rng, S, 7), 0.25, 1.0)  # broken, uneven network
    opacity = rng.uniform(0.45, 0.8) * ctx.strength * patchy * np.maximum(soften(region, 4 * s), 0.3)
    return paint(img, shape, jitter_color(rng, (75, 45, 30), 15), opacity)


def draw_u(img: np.ndarray, ctx: LesionContext) -> np.ndarray:
    """Ulceration: dark red-brown crust with a rough surface, sometimes an orange-yellow rim."""
    rng, S, R = ctx.rng, ctx.size, ctx.R
    r = R * rng.uniform(0.32, 0.55)
    x0, y0 = ctx.anywhere(0.3 * r)
    crust = blob(rng, S, x0, y0, r, rough=0.25)
    mask = np.zeros((S, S), bool)
    if rng.random() < 0.5:
        k = 2 * iround(0.5 * _width(ctx, rng.uniform(4.5, 6.5))) + 1
        rim = cv2.dilate(crust.view(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) > 0
        mask |= paint(img, ctx.soft(rim, 1.0), jitter_color(rng, (200, 150, 80), 20), 0.6 * ctx.strength)
    tex = smooth_noise(rng, S, max(8, S // 10))[..., None] * 25
    col = jitter_color(rng, (115, 38, 30), 20)[None, None, :] + tex
    mask |= paint(img, ctx.soft(crust, 1.2), col, rng.uniform(0.6, 0.95) * ctx.strength)
    return mask


def draw_on(img: np.ndarray, ctx: LesionContext) -> np.ndarray:
    """Ovoid nests: a few large blue-grey ovoid blotches."""
    rng, S, R = ctx.rng, ctx.size, ctx.R
    canvas = np.zeros((S, S), np.float32)
    x0, y0 = ctx.anywhere(0.15 * R)
    for _ in range(rng.integers(2, 7)):
        x = x0 + rng.normal(0, 0.25 * R)
        y = y0 + rng.normal(0, 0.2 * R)
        a = max(R * rng.uniform(0.18, 0.32), 0.5 * _width(ctx, 6.0))
        b = max(a * rng.uniform(0.5, 0.8), 0.5 * _width(ctx, 5.0))
        cv2.ellipse(canvas, (iround(x), iround(y)), (iround(a), iround(b)),
                    float(rng.uniform(0, 180)), 0, 360, 1.0, -1, cv2.LINE_AA)
    tex = smooth_noise(rng, S, max(8, S // 12))[..., None] * 12
    col = jitter_color(rng, (95, 108, 128), 18)[None, None, :] + tex
    return paint(img, ctx.soft(canvas, 1.5), col, rng.uniform(0.5, 0.85) * ctx.strength)


def draw_mg(img: np.ndarray, ctx: LesionContext) -> np.ndarray:
    """Multiglobules: a cluster of small blue-grey globules (fainter, smaller than ON)."""
    rng, S, R = ctx.rng, ctx.size, ctx.R
    canvas = np.zeros((S, S), np.float32)
    x0, y0 = ctx.anywhere(0.12 * R)
    spread = R * rng.uniform(0.18, 0.3)
    for _ in range(rng.integers(12, 26)):
        x = x0 + rng.normal(0, spread)
        y = y0 + rng.normal(0, spread)
        r = 0.5 * _lesion_width(ctx, rng.uniform(0.1, 0.18))
        cv2.circle(canvas, (iround(4 * x), iround(4 * y)), iround(4 * r), 1.0, -1, cv2.LINE_AA, shift=2)
    return paint(img, ctx.soft(canvas, 0.6), jitter_color(rng, (92, 100, 122), 18),
                 rng.uniform(0.35, 0.65) * ctx.strength)


def draw_ml(img: np.ndarray, ctx: LesionContext) -> np.ndarray:
    """Maple-leaf-like areas: 3-6 bulbous lobes side by side at the lesion's rim (anywhere on it), pointing out."""
    rng, S, R = ctx.rng, ctx.size, ctx.R
    canvas = np.zeros((S, S), np.float32)
    x0, y0 = ctx.anywhere(0.1 * R, rim=0.3 * R)
    out = ctx.outward(x0, y0)
    n_lobes = int(rng.integers(4, 8))
    half = 0.5 * _lesion_width(ctx, rng.uniform(0.12, 0.18))  # lobe half-width
    step = 2.7 * half
    for k in range(n_lobes):
        a = out + rng.normal(0, 0.12)
        off = step * (k - (n_lobes - 1) / 2)
        length = R * rng.uniform(0.3, 0.45)
        w = half * rng.uniform(0.9, 1.25)
        bx, by = x0 - off * np.sin(out), y0 + off * np.cos(out)  # lobe base, side by side along the rim
        mx, my = bx + 0.2 * length * np.cos(a), by + 0.2 * length * np.sin(a)
        cv2.ellipse(canvas, (iround(mx), iround(my)), (max(1, iround(0.5 * length)), max(1, iround(w))),
                    float(np.degrees(a)), 0, 360, 1.0, -1, cv2.LINE_AA)
        tip = 0.6 * length  # bulbous outer end
        cv2.circle(canvas, (iround(bx + tip * np.cos(a)), iround(by + tip * np.sin(a))),
                   max(1, iround(w * 1.3)), 1.0, -1, cv2.LINE_AA)
    return paint(img, ctx.soft(canvas, 1.0), jitter_color(rng, (85, 80, 98), 18),
                 rng.uniform(0.4, 0.7) * ctx.strength)


def draw_sw(img: np.ndarray, ctx: LesionContext) -> np.ndarray:
    """Spoke-wheel: radial projections around a darker central hub (small, faint)."""
    rng, S, R = ctx.rng, ctx.size, ctx.R
    canvas = np.zeros((S, S), np.float32)
    x0, y0 = ctx.anywhere(0.2 * R)
    hub = max(R * rng.uniform(0.08, 0.12), 0.5 * _width(ctx, 7.0))
    length = R * rng.uniform(0.28, 0.42)
    n_sp = int(rng.integers(5, 10))
    th = max(1, iround(_width(ctx, rng.uniform(4.5, 5.5))))
    a0 = rng.uniform(0, 2 * np.pi)
    for k in range(n_sp):
        a = a0 + 2 * np.pi * k / n_sp + rng.normal(0, 0.1)
        ln = length * rng.uniform(0.75, 1.1)
        p0 = (iround(x0 + 0.5 * hub * np.cos(a)), iround(y0 + 0.5 * hub * np.sin(a)))
        p1 = (iround(x0 + (hub + ln) * np.cos(a)), iround(y0 + (hub + ln) * np.sin(a)))
        cv2.line(canvas, p0, p1, 1.0, th, cv2.LINE_AA)
        cv2.circle(canvas, p1, max(1, iround(0.7 * th)), 1.0, -1, cv2.LINE_AA)  # club-shaped tips
    col = jitter_color(rng, (85, 60, 70), 15)
    mask = paint(img, ctx.soft(canvas, 0.5), col, rng.uniform(0.3, 0.55) * ctx.strength)
    hubc = np.zeros((S, S), np.float32)
    cv2.circle(hubc, (iround(x0), iround(y0)), iround(hub), 1.0, -1, cv2.LINE_AA)
    return mask | paint(img, ctx.soft(hubc, 0.8), col * 0.7, rng.uniform(0.45, 0.65) * ctx.strength)


def _branch(canvas, rng, x, y, ang, length, thick, depth, ctx):
    if depth == 0 or length < 3 * ctx.s:
        return
    pts = [(x, y)]
    for _ in range(4):  # a slightly wiggly segment
        ang += rng.normal(0, 0.25)
        x += length / 4 * np.cos(ang)
        y += length / 4 * np.sin(ang)
        pts.append((x, y))
    cv2.polylines(canvas, [np.round(np.array(pts) * 4).astype(np.int32)], False, 1.0,
                  max(1, iround(_width(ctx, thick))), cv2.LINE_AA, shift=2)
    for sgn in (-1, 1):
        if depth > 1 and rng.random() < 0.9:
            _branch(canvas, rng, x, y, ang + sgn * rng.uniform(0.35, 0.8), length * rng.uniform(0.55, 0.75),
                    thick * 0.8, depth - 1, ctx)


def draw_at(img: np.ndarray, ctx: LesionContext) -> np.ndarray:
    """Arborizing telangiectasia: sharp, branching bright-red vessels of decreasing calibre."""
    rng, S, R = ctx.rng, ctx.size, ctx.R
    canvas = np.zeros((S, S), np.float32)
    x0, y0 = ctx.anywhere(0.1 * R)
    for _ in range(int(rng.integers(2, 6))):
        x, y = x0 + rng.normal(0, 0.15 * R), y0 + rng.normal(0, 0.15 * R)
        _branch(canvas, rng, x, y, rng.uniform(0, 2 * np.pi), R * rng.uniform(0.4, 0.6),
                rng.uniform(5.5, 7.0), int(rng.integers(3, 5)), ctx)
    return paint(img, ctx.soft(canvas, 0.4), jitter_color(rng, (185, 35, 48), 20),
                 rng.uniform(0.7, 0.95) * ctx.strength)


#: share of faint instances per code: rare codes are subtler (harder) than PN and AT
FAINT_RATE: dict[str, float] = {"PN": 0.15, "U": 0.2, "ON": 0.25, "MG": 0.35, "ML": 0.35, "SW": 0.35, "AT": 0.15}
DRAWERS = {"PN": draw_pn, "U": draw_u, "ON": draw_on, "MG": draw_mg, "ML": draw_ml, "SW": draw_sw, "AT": draw_at}
#: paint order: flat structures first, vessels and crust last
PAINT_ORDER = ("PN", "ML", "ON", "MG", "SW", "U", "AT")


def draw_confounders(img: np.ndarray, ctx: LesionContext) -> None:
    """Label-independent confounders that resemble, but are not, the coded patterns.

    Brown dots/globules (nevus; brown, not blue-grey), dotted and short linear vessels (not arborizing),
    a small dark blood spot (not a crust), a diffuse blue-grey or dark structureless veil (not ovoid).
    They have the patterns' widths, so width tells nothing. Part of the scene (drawn in every twin too).
    """
    rng, S, s, R = ctx.rng, ctx.size, ctx.s, ctx.R
    if rng.random() < 0.35:  # brown dots/globules
        canvas = np.zeros((S, S), np.float32)
        for _ in range(int(rng.integers(4, 15))):
            x, y = ctx.anywhere()
            cv2.circle(canvas, (iround(x), iround(y)), max(1, iround(0.5 * _width(ctx, rng.uniform(4.5, 7.0)))),
                       1.0, -1, cv2.LINE_AA)
        paint(img, ctx.soft(canvas, 0.6), jitter_color(rng, (80, 50, 35), 15), rng.uniform(0.4, 0.7))
    if rng.random() < 0.25:  # dotted vessels
        canvas = np.zeros((S, S), np.float32)
        for _ in range(int(rng.integers(3, 12))):
            x, y = ctx.anywhere()
            cv2.circle(canvas, (iround(x), iround(y)), max(1, iround(0.5 * _width(ctx, 4.5))), 1.0, -1, cv2.LINE_AA)
        paint(img, ctx.soft(canvas, 0.5), jitter_color(rng, (170, 50, 55), 15), rng.uniform(0.4, 0.7))
    if rng.random() < 0.2:  # short linear / comma vessels, unbranched
        canvas = np.zeros((S, S), np.float32)
        for _ in range(int(rng.integers(1, 5))):
            x, y = ctx.anywhere()
            a = rng.uniform(0, 2 * np.pi)
            ln = R * rng.uniform(0.1, 0.22)
            cv2.line(canvas, (iround(x), iround(y)), (iround(x + ln * np.cos(a)), iround(y + ln * np.sin(a))),
                     1.0, max(1, iround(_width(ctx, 4.5))), cv2.LINE_AA)
        paint(img, ctx.soft(canvas, 0.5), jitter_color(rng, (175, 45, 55), 15), rng.uniform(0.4, 0.75))
    if rng.random() < 0.1:  # small dark blood spot
        x, y = ctx.anywhere()
        spot = blob(rng, S, x, y, max(R * rng.uniform(0.06, 0.12), 3 * s), rough=0.15)
        paint(img, ctx.soft(spot, 1.0), jitter_color(rng, (65, 22, 35), 10), rng.uniform(0.6, 0.85))
    if rng.random() < 0.3:  # structureless veil: bluish-grey or dark brown, diffuse edges
        x, y = ctx.anywhere()
        veil = blob(rng, S, x, y, R * rng.uniform(0.2, 0.4), rough=0.2)
        col = (130, 130, 150) if rng.random() < 0.5 else (95, 65, 50)
        paint(img, ctx.soft(veil, 5.0), jitter_color(rng, col, 10), rng.uniform(0.15, 0.4))
