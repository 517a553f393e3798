"""One drawer per dermoscopic code, plus the label-independent confounders that resemble them.

Each drawer blends its structure into the image (float32 RGB, 0-255) and returns its boolean region.
"""
from __future__ import annotations

import cv2
import numpy as np

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


def draw_pn(img: np.ndarray, ctx: LesionContext) -> np.ndarray:
    """Pigment network: irregular, patchy reticular grid of brown lines over a large part of the lesion."""
    rng, S, s = ctx.rng, ctx.size, ctx.s
    x0, y0 = ctx.point(0.35)
    region = blob(rng, S, x0, y0, ctx.R * rng.uniform(0.55, 0.95), rough=0.18) & ctx.lesion
    yy, xx = grid(S)
    cell = rng.uniform(8.0, 14.0) * s
    phi = rng.uniform(0, np.pi)
    fine = max(6, int(S / (1.5 * cell)))
    wu = cell * (0.35 * smooth_noise(rng, S, 5) + 0.18 * smooth_noise(rng, S, fine))
    wv = cell * (0.35 * smooth_noise(rng, S, 5) + 0.18 * smooth_noise(rng, S, fine))
    u = (xx * np.cos(phi) + yy * np.sin(phi) + wu) / cell
    v = (-xx * np.sin(phi) + yy * np.cos(phi) + wv) / cell
    v = v + 0.5 * (np.floor(u) % 2)  # brick offset -> honeycomb-like holes
    d = np.minimum(np.abs(u - np.round(u)), np.abs(v - np.round(v))) * cell
    width = rng.uniform(0.9, 1.7) * s * (1 + 0.3 * smooth_noise(rng, S, 8))
    lines = np.exp(-((d / width) ** 2))
    patchy = np.clip(0.75 + 0.6 * smooth_noise(rng, S, 7), 0.15, 1.0)  # broken, uneven network
    contrast = rng.uniform(0.45, 0.85) * ctx.strength
    fade = soften(region, 5 * s)
    alpha = lines * patchy * fade * contrast * ctx.lesion_alpha
    blend(img, alpha, jitter_color(rng, (75, 45, 30), 15))
    return region


def draw_u(img: np.ndarray, ctx: LesionContext) -> np.ndarray:
    """Ulceration: dark red-brown crust with a rough surface, sometimes an orange-yellow rim."""
    rng, S, s = ctx.rng, ctx.size, ctx.s
    x0, y0 = ctx.point(0.55)
    region = blob(rng, S, x0, y0, ctx.R * rng.uniform(0.12, 0.32), rough=0.25) & ctx.lesion
    soft = soften(region, 1.5 * s)
    if rng.random() < 0.5:
        rim = soften(cv2.dilate(region.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0, 1.5 * s) - soft
        blend(img, np.clip(rim, 0, 1) * 0.6 * ctx.strength, jitter_color(rng, (200, 150, 80), 20))
    tex = smooth_noise(rng, S, max(8, S // 10))[..., None] * 25
    col = jitter_color(rng, (115, 38, 30), 20)[None, None, :] + tex
    blend(img, soft * rng.uniform(0.6, 0.95) * ctx.strength, col)
    return region


def draw_on(img: np.ndarray, ctx: LesionContext) -> np.ndarray:
    """Ovoid nests: a few large blue-grey ovoid blotches."""
    rng, S, s = ctx.rng, ctx.size, ctx.s
    canvas = np.zeros((S, S), np.float32)
    x0, y0 = ctx.point(0.5)
    for _ in range(rng.integers(1, 5)):
        x = x0 + rng.normal(0, 0.18 * ctx.R)
        y = y0 + rng.normal(0, 0.18 * ctx.R)
        a = ctx.R * rng.uniform(0.12, 0.24)
        b = a * rng.uniform(0.5, 0.8)
        cv2.ellipse(canvas, (iround(x), iround(y)), (max(2, int(a)), max(1, int(b))),
                    float(rng.uniform(0, 180)), 0, 360, 1.0, -1, cv2.LINE_AA)
    region = (canvas > 0.5) & ctx.lesion
    alpha = soften(canvas, 1.8 * s) * rng.uniform(0.5, 0.85) * ctx.strength * ctx.lesion_alpha
    tex = smooth_noise(rng, S, max(8, S // 12))[..., None] * 12
    blend(img, alpha, jitter_color(rng, (95, 108, 128), 18)[None, None, :] + tex)
    return region


def draw_mg(img: np.ndarray, ctx: LesionContext) -> np.ndarray:
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
        cv2.circle(canvas, (iround(x), iround(y)), iround(r), 1.0, -1, cv2.LINE_AA)
        pts.append((x, y))
    hull = np.zeros((S, S), np.uint8)
    pts_a = np.round(np.array(pts)).astype(np.int32)
    cv2.fillConvexPoly(hull, cv2.convexHull(pts_a), 1)
    region = ((cv2.dilate(hull, np.ones((3, 3), np.uint8), iterations=max(1, int(2 * s))) > 0) | (canvas > 0.5))
    region &= ctx.lesion
    alpha = soften(canvas, 0.7 * s) * rng.uniform(0.4, 0.75) * ctx.strength * ctx.lesion_alpha
    blend(img, alpha, jitter_color(rng, (92, 100, 122), 18))
    return region


def draw_ml(img: np.ndarray, ctx: LesionContext) -> np.ndarray:
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
        cv2.ellipse(canvas, (iround(mx), iround(my)), (max(2, int(length * 0.5)), max(1, iround(w))),
                    float(np.degrees(a)), 0, 360, 1.0, -1, cv2.LINE_AA)
        tip = r_mid + 0.4 * length  # bulbous outer end
        cv2.circle(canvas, (iround(ctx.cx + tip * np.cos(a)), iround(ctx.cy + tip * np.sin(a))),
                   max(1, iround(w * 1.3)), 1.0, -1, cv2.LINE_AA)
    canvas *= ctx.lesion_alpha
    region = (canvas > 0.5) & ctx.lesion
    alpha = soften(canvas, 1.0 * s) * rng.uniform(0.4, 0.7) * ctx.strength
    blend(img, alpha, jitter_color(rng, (85, 80, 98), 18))
    return region


def draw_sw(img: np.ndarray, ctx: LesionContext) -> np.ndarray:
    """Spoke-wheel: radial projections around a darker central hub (small, faint)."""
    rng, S, s = ctx.rng, ctx.size, ctx.s
    canvas = np.zeros((S, S), np.float32)
    x0, y0 = ctx.point(0.55)
    hub = max(1.5, ctx.R * rng.uniform(0.04, 0.07))
    length = ctx.R * rng.uniform(0.13, 0.22)
    n_sp = int(rng.integers(7, 13))
    th = max(1, iround(rng.uniform(1.0, 2.0) * s))
    a0 = rng.uniform(0, 2 * np.pi)
    for k in range(n_sp):
        a = a0 + 2 * np.pi * k / n_sp + rng.normal(0, 0.12)
        ln = length * rng.uniform(0.75, 1.1)
        p0 = (iround(x0 + hub * np.cos(a)), iround(y0 + hub * np.sin(a)))
        p1 = (iround(x0 + (hub + ln) * np.cos(a)), iround(y0 + (hub + ln) * np.sin(a)))
        cv2.line(canvas, p0, p1, 0.85, th, cv2.LINE_AA)
        cv2.circle(canvas, p1, max(1, th), 0.85, -1, cv2.LINE_AA)  # club-shaped tips
    spokes = soften(canvas, 0.6 * s) * rng.uniform(0.4, 0.65) * ctx.strength
    hubc = np.zeros((S, S), np.float32)
    cv2.circle(hubc, (iround(x0), iround(y0)), iround(hub), 1.0, -1, cv2.LINE_AA)
    col = jitter_color(rng, (85, 60, 70), 15)
    blend(img, spokes * ctx.lesion_alpha, col)
    blend(img, soften(hubc, 0.8 * s) * rng.uniform(0.6, 0.8) * ctx.strength * ctx.lesion_alpha, col * 0.6)
    yy, xx = grid(S)
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
                  max(1, iround(thick)), cv2.LINE_AA, shift=2)
    for sgn in (-1, 1):
        if depth > 1 and rng.random() < 0.9:
            _branch(canvas, rng, x, y, ang + sgn * rng.uniform(0.35, 0.8), length * rng.uniform(0.55, 0.75),
                    thick * 0.72, depth - 1, s)


def draw_at(img: np.ndarray, ctx: LesionContext) -> np.ndarray:
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
                        iterations=max(1, iround(2 * s))) > 0
    region &= ctx.lesion
    alpha = soften(canvas, 0.4 * s) * rng.uniform(0.7, 0.95) * ctx.strength
    blend(img, alpha, jitter_color(rng, (185, 35, 48), 20))
    return region


#: share of faint instances per code: rare codes are subtler (harder) than PN and AT
FAINT_RATE: dict[str, float] = {"PN": 0.15, "U": 0.2, "ON": 0.25, "MG": 0.35, "ML": 0.35, "SW": 0.35, "AT": 0.15}
DRAWERS = {"PN": draw_pn, "U": draw_u, "ON": draw_on, "MG": draw_mg, "ML": draw_ml, "SW": draw_sw, "AT": draw_at}
#: paint order: flat structures first, vessels and crust last
PAINT_ORDER = ("PN", "ML", "ON", "MG", "SW", "U", "AT")


def draw_confounders(img: np.ndarray, ctx: LesionContext) -> None:
    """Label-independent confounders that resemble, but are not, the coded patterns.

    Brown dots/globules (nevus; brown, not blue-grey), dotted and short linear vessels (not arborizing),
    a small dark blood spot (not a crust), a diffuse blue-grey or dark structureless veil (not ovoid).
    """
    rng, S, s = ctx.rng, ctx.size, ctx.s
    if rng.random() < 0.35:  # brown dots/globules
        canvas = np.zeros((S, S), np.float32)
        for _ in range(int(rng.integers(4, 15))):
            x, y = ctx.point(0.85)
            cv2.circle(canvas, (iround(x), iround(y)), max(1, iround(rng.uniform(1.0, 2.5) * s)),
                       1.0, -1, cv2.LINE_AA)
        blend(img, soften(canvas, 0.6 * s) * rng.uniform(0.4, 0.7) * ctx.lesion_alpha,
               jitter_color(rng, (80, 50, 35), 15))
    if rng.random() < 0.25:  # dotted vessels
        canvas = np.zeros((S, S), np.float32)
        for _ in range(int(rng.integers(3, 12))):
            x, y = ctx.point(0.9)
            cv2.circle(canvas, (iround(x), iround(y)), max(1, iround(1.0 * s)), 1.0, -1, cv2.LINE_AA)
        blend(img, soften(canvas, 0.5 * s) * rng.uniform(0.4, 0.7) * ctx.lesion_alpha,
               jitter_color(rng, (170, 50, 55), 15))
    if rng.random() < 0.2:  # short linear / comma vessels, unbranched
        canvas = np.zeros((S, S), np.float32)
        for _ in range(int(rng.integers(1, 5))):
            x, y = ctx.point(0.8)
            a = rng.uniform(0, 2 * np.pi)
            ln = ctx.R * rng.uniform(0.08, 0.18)
            cv2.line(canvas, (iround(x), iround(y)),
                     (iround(x + ln * np.cos(a)), iround(y + ln * np.sin(a))), 1.0,
                     max(1, iround(1.2 * s)), cv2.LINE_AA)
        blend(img, soften(canvas, 0.5 * s) * rng.uniform(0.4, 0.75) * ctx.lesion_alpha,
               jitter_color(rng, (175, 45, 55), 15))
    if rng.random() < 0.1:  # small dark blood spot
        x, y = ctx.point(0.7)
        reg = blob(rng, S, x, y, ctx.R * rng.uniform(0.05, 0.1), rough=0.15)
        blend(img, soften(reg, 1.0 * s) * rng.uniform(0.6, 0.85), jitter_color(rng, (65, 22, 35), 10))
    if rng.random() < 0.3:  # structureless veil: bluish-grey or dark brown, diffuse edges
        x, y = ctx.point(0.5)
        reg = blob(rng, S, x, y, ctx.R * rng.uniform(0.2, 0.4), rough=0.2)
        col = (130, 130, 150) if rng.random() < 0.5 else (95, 65, 50)
        blend(img, soften(reg, 5 * s) * rng.uniform(0.15, 0.4) * ctx.lesion_alpha, jitter_color(rng, col, 10))
