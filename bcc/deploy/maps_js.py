"""The Grad-CAM maps drawn by the page itself from the raw arrays: one script shared by ``report.html`` and
the review app (``bcc.review``).

Triage used to post-process, colour, blend and JPEG-encode eight overlays per lesion (most of its time on
224 px PNGs: docs/speed.md). Now it hands the page the raw maps (8 x h x w floats, 7 x 7
for MobileNetV2 at 224 px: 392 numbers) and the browser does the rest, exactly as
``bcc.explanation.gradcam.postprocess`` and ``bcc.explanation.render.overlay`` do: ReLU, min-max
``(c − min) / (1e-7 + max)``, bilinear resize (``align_corners=False``), min-max again, matplotlib's jet
table (``JET_RGB``: index ``min(⌊z·N⌋, N − 1)``), blended half and half over the lesion. ``bccHeat`` is the
map's colours alone (tested against the Python pipeline in a real browser).

A ``<div class="maps" data-maps="[[[...]]]" data-outputs='["bcc", ...]' data-view="[l, t, r, b]">`` beside
an ``<img class="lesion">`` in the same ``[data-case]`` element gets its ``<canvas>`` per output drawn: the
map over the part of the picture the network saw (``data-view``, fractions of the picture: all of it for a
square resize, the centre square for ``crop``), the map's 0 colour outside it, as
``bcc.explanation.gradcam.maps_on_picture`` places it. The script has
no network access of its own: the pages' Content-Security-Policy allows this exact script by its SHA-256
(:func:`csp_hash`) and nothing else.
"""
from __future__ import annotations

import base64
import hashlib
import json

import numpy as np

from bcc.explanation.gradcam import EPS
from bcc.explanation.render import JET_RGB

_TABLE = json.dumps(np.round(JET_RGB * 255, 4).flatten().tolist())

SCRIPT = """
"use strict";
const BCC_JET = new Float32Array(@TABLE@);
const BCC_EPS = @EPS@;
function bccMinMax(c) {
  let lo = Infinity, hi = -Infinity;
  for (const v of c) { if (v < lo) lo = v; if (v > hi) hi = v; }
  return c.map(v => (v - lo) / (BCC_EPS + hi - lo));
}
function bccAxis(nIn, nOut) {
  const i0 = new Int32Array(nOut), i1 = new Int32Array(nOut), f = new Float32Array(nOut);
  for (let o = 0; o < nOut; o++) {
    const s = Math.max((o + 0.5) * nIn / nOut - 0.5, 0);
    i0[o] = Math.min(Math.floor(s), nIn - 1); i1[o] = Math.min(i0[o] + 1, nIn - 1); f[o] = s - i0[o];
  }
  return [i0, i1, f];
}
function bccHeat(cam, H, W) {
  const h = cam.length, w = cam[0].length;
  const small = bccMinMax(Float64Array.from(cam.flat(), v => Math.max(v, 0)));
  const [y0, y1, fy] = bccAxis(h, H), [x0, x1, fx] = bccAxis(w, W);
  const big = new Float64Array(H * W);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    const a = small[y0[y] * w + x0[x]] * (1 - fx[x]) + small[y0[y] * w + x1[x]] * fx[x];
    const b = small[y1[y] * w + x0[x]] * (1 - fx[x]) + small[y1[y] * w + x1[x]] * fx[x];
    big[y * W + x] = a * (1 - fy[y]) + b * fy[y];
  }
  const z = bccMinMax(big), n = BCC_JET.length / 3, rgb = new Float32Array(H * W * 3);
  for (let i = 0; i < H * W; i++) {
    const k = Math.min(Math.floor(Math.min(Math.max(z[i], 0), 1) * n), n - 1);
    rgb[3 * i] = BCC_JET[3 * k]; rgb[3 * i + 1] = BCC_JET[3 * k + 1]; rgb[3 * i + 2] = BCC_JET[3 * k + 2];
  }
  return rgb;
}
function bccDraw(box) {
  const img = box.closest("[data-case]").querySelector("img.lesion");
  const maps = JSON.parse(box.dataset.maps), names = JSON.parse(box.dataset.outputs);
  const v = JSON.parse(box.dataset.view || "[0, 0, 1, 1]");
  const side = Number(box.dataset.side || 160), scale = side / Math.max(img.naturalWidth, img.naturalHeight);
  const W = Math.max(1, Math.round(img.naturalWidth * scale)), H = Math.max(1, Math.round(img.naturalHeight * scale));
  const top = Math.round(v[1] * H), left = Math.round(v[0] * W);
  const rh = Math.max(1, Math.round(v[3] * H) - top), rw = Math.max(1, Math.round(v[2] * W) - left);
  for (const fig of box.querySelectorAll("figure[data-output]")) {
    const canvas = fig.querySelector("canvas"), k = names.indexOf(fig.dataset.output);
    canvas.width = W; canvas.height = H;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0, W, H);
    const px = ctx.getImageData(0, 0, W, H), heat = bccHeat(maps[k], rh, rw);
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
      const inside = y >= top && y < top + rh && x >= left && x < left + rw, i = y * W + x;
      const j = inside ? 3 * ((y - top) * rw + (x - left)) : -1;  // outside the network's view: map 0
      for (let c = 0; c < 3; c++)
        px.data[4 * i + c] = Math.floor(0.5 * (j < 0 ? BCC_JET[c] : heat[j + c]) + 0.5 * px.data[4 * i + c] + 0.5);
    }
    ctx.putImageData(px, 0, 0);
  }
  box.dataset.drawn = "true";
}
function bccDrawAll() {
  for (const box of document.querySelectorAll("div.maps[data-maps]")) {
    const img = box.closest("[data-case]").querySelector("img.lesion");
    if (img.complete && img.naturalWidth) bccDraw(box); else img.addEventListener("load", () => bccDraw(box));
  }
}
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", bccDrawAll); else bccDrawAll();
""".replace("@TABLE@", _TABLE).replace("@EPS@", repr(EPS))


def csp_hash(script: str = SCRIPT) -> str:
    """``'sha256-…'``: the Content-Security-Policy source that allows exactly `script` inline."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii") + "'"


def maps_attribute(cams: np.ndarray) -> str:
    """The maps (8, h, w) as the compact JSON the page reads: each map divided by its largest |value| and
    rounded to 5 decimals. The drawing is blind to a map's positive scale (ReLU and min-max divide it out),
    so this is the same picture in a third of the characters and a quarter of the time of printing the raw
    floats (a cost triage pays per lesion)."""
    m = np.asarray(cams, dtype=np.float64)
    scale = np.abs(m).max(axis=(1, 2), keepdims=True)
    return json.dumps(np.round(m / np.where(scale > 0, scale, 1.0), 5).tolist(), separators=(",", ":"))
