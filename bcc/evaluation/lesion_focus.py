"""Does Grad-CAM look at the lesion? Real pictures against dermatologists' whole-lesion masks (PH2).

Real dermoscopy carries what the literature reports as shortcuts: rulers, ink marks, hair, the black
vignette of the dermatoscope's corners. A model that keys on them puts its Grad-CAM mass there. Per test
picture with a lesion mask (``masks/<id>_lesion.png``) and per map — the diagnosis head's and each trained
pattern head's, for its predicted class at `threshold` (as Table 4) — over the part of the picture the
network saw (``bcc.data.images.view_region``), with Quantus' metrics (``localisation.quantus_metrics``):

- ``share``: relevance mass accuracy, the map's mass inside the lesion, ``Σ map·lesion / Σ map``;
- the same share for three maps that know nothing of the picture: ``uniform`` (flat over the view: the
  lesion's area share, chance), ``centre`` (a centred Gaussian, sd ¼ of the side: most lesions are
  photographed in the middle, so this is the bar a map must clear to show it follows *this* lesion) and
  ``lesion`` (flat over the lesion: 1, the ceiling);
- ``peak_in_lesion``: the pointing game, whether the map's maximum lies on the lesion — a peak off it is the
  shortcut signature; ``peak_y``/``peak_x`` (its place in the view, 0..1) and ``peak_on_border`` (in the
  outer ring of cells of the Grad-CAM grid) say where such peaks go (:func:`peak_figure`);
  :func:`worst_figure` shows the pictures whose maps hold the least mass on the lesion, as measured.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bcc.core.layout import BEST, PREDICTIONS
from bcc.core.patterns import OUTPUTS
from bcc.core.predictions import PROB_COLUMNS, read_predictions
from bcc.data.contract import LESION
from bcc.data.images import read_mask, shrink, view_region
from bcc.evaluation.figures import save_figure
from bcc.evaluation.localisation.baselines import centre_map, fit_mask
from bcc.evaluation.localisation.quantus_metrics import localisation
from bcc.evaluation.localisation.records import predicted_class_cams, read_image
from bcc.explanation.gradcam import maps_on_picture
from bcc.explanation.render import overlay
from bcc.models.checkpoint import load_network

WORK_SIDE = 256  # statistics at this longer side: maps hold nothing finer than a feature cell


def picture_records(maps: np.ndarray, lesion: np.ndarray, region: tuple[int, int, int, int],
                    outputs: Sequence[str], grid: tuple[int, int] | None = None) -> list[dict]:
    """Records of one picture: `maps` (8, H, W) in [0, 1] on the picture, its `lesion` (H, W) bool, the
    `region` the network saw (top, left, height, width) and its Grad-CAM `grid` (h, w cells); one row per
    output in `outputs`."""
    top, left, h, w = region
    view = np.zeros(lesion.shape, bool)
    view[top:top + h, left:left + w] = True
    centre = np.zeros(lesion.shape)
    centre[top:top + h, left:left + w] = centre_map((h, w))
    seen = lesion & view
    baselines = localisation([view.astype(float), centre], [lesion, lesion], [view, view])["mass_accuracy"]
    chosen = [maps[OUTPUTS.index(o)] for o in outputs]
    scores = localisation(chosen, [lesion] * len(chosen), [view] * len(chosen))
    rows = []
    for k, (o, m) in enumerate(zip(outputs, chosen, strict=True)):
        py, px = np.unravel_index(int(np.argmax(m * view)), m.shape)
        y, x = (py - top + 0.5) / h, (px - left + 0.5) / w
        cells = grid or (1, 1)
        border = min(y * cells[0], x * cells[1], (1 - y) * cells[0], (1 - x) * cells[1]) < 1
        rows.append({"output": o, "share": float(scores["mass_accuracy"][k]), "uniform": float(baselines[0]),
                     "centre": float(baselines[1]), "lesion": 1.0 if seen.any() else float("nan"),
                     "peak_in_lesion": bool(scores["pointing_game"][k] == 1), "peak_y": float(y), "peak_x": float(x),
                     "peak_on_border": bool(border) if grid else None, "lesion_area": float(seen.sum() / view.sum())})
    return rows


def run_records(run_dir: Path, dataset, outputs: Sequence[str] = ("bcc",), threshold: float = 0.5,
                batch_size: int = 16, predictions: str = PREDICTIONS, gradcam_layer: str | None = None
                ) -> tuple[pd.DataFrame, dict[tuple[str, str], np.ndarray]]:
    """One row per (test picture with a lesion mask, output in `outputs` the model was trained on), and the
    measured maps themselves ((image id, output) → (H, W) float16 at ``WORK_SIDE``) for the figures.
    `predictions` names the run's file of pictures to take (``val_predictions.csv``: its validation slice, where
    a choice such as `gradcam_layer` — the maps' layer, None: the network's own — may be made)."""
    run_dir = Path(run_dir)
    preds = read_predictions(run_dir / predictions)
    ids = [i for i in preds["image_id"] if LESION in dataset.masks.get(i, {})]
    if not ids:
        return pd.DataFrame(), {}
    net = load_network(run_dir / BEST)
    if gradcam_layer is not None:
        net.explain_at(gradcam_layer)
    outputs = [o for o in outputs if net.trained[OUTPUTS.index(o)]]
    preds = preds.set_index("image_id").loc[ids]
    rows, kept = [], {}
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        rgbs = [shrink(read_image(dataset.image_path(i)), WORK_SIDE) for i in chunk]
        aspects = [dataset.aspect(i) for i in chunk]
        p = preds.loc[chunk, PROB_COLUMNS].to_numpy(np.float64)
        _, cams, signs = predicted_class_cams(net, rgbs, np.nan_to_num(p, nan=0.0), threshold, aspects)
        grid = (int(cams.shape[-2]), int(cams.shape[-1]))
        for k, (image_id, rgb) in enumerate(zip(chunk, rgbs, strict=True)):
            lesion = fit_mask(read_mask(dataset.masks[image_id][LESION]), rgb.shape[:2])
            maps = maps_on_picture(cams[k:k + 1], rgb.shape[:2], net.preprocess, aspects[k])[0].numpy()
            region = view_region(rgb.shape[:2], net.preprocess, aspects[k])
            for rec in picture_records(maps, lesion, region, outputs, grid):
                o = rec["output"]
                kept[(image_id, o)] = maps[OUTPUTS.index(o)].astype(np.float16)
                rows.append({"image_id": image_id, "fold": int(preds.loc[image_id, "fold"]), "run_dir": str(run_dir),
                             "target": "positive" if signs[k, OUTPUTS.index(o)] > 0 else "negative",
                             "grid": f"{grid[0]}x{grid[1]}", **rec})
    return pd.DataFrame(rows), kept


def summarise(records: pd.DataFrame) -> pd.DataFrame:
    """Per output: mean share of the map and of each baseline, the share of pictures where the map beats the
    centre baseline, and the count of peaks off the lesion."""
    rows = []
    for o, d in records.groupby("output", sort=False):
        rows.append({"output": o, "pictures": len(d), "share_gradcam": d["share"].mean(),
                     "share_uniform": d["uniform"].mean(), "share_centre": d["centre"].mean(),
                     "share_lesion_uniform": d["lesion"].mean(),
                     "beats_centre": float((d["share"] > d["centre"]).mean()),
                     "peaks_off_lesion": int((~d["peak_in_lesion"].astype(bool)).sum())})
    return pd.DataFrame(rows)


def worst_figure(records: pd.DataFrame, maps: dict[tuple[str, str], np.ndarray], dataset, path: Path,
                 output: str = "bcc", n: int = 6) -> Path | None:
    """The `n` pictures whose `output` map holds the least mass on the lesion: picture, the measured map's
    overlay, lesion contour — what the model looked at instead."""
    d = records[records["output"] == output].nsmallest(n, "share")
    if d.empty:
        return None
    fig, axes = plt.subplots(2, len(d), figsize=(2.6 * len(d), 5.4), squeeze=False)
    for j, (_, r) in enumerate(d.iterrows()):
        rgb = shrink(read_image(dataset.image_path(r["image_id"])), WORK_SIDE)
        lesion = fit_mask(read_mask(dataset.masks[r["image_id"]][LESION]), rgb.shape[:2])
        axes[0, j].imshow(rgb)
        axes[0, j].contour(lesion, levels=[0.5], colors="w", linewidths=0.8)
        axes[0, j].set_title(f"{r['image_id']}\nshare {r['share']:.2f} (centre {r['centre']:.2f})", fontsize=7)
        axes[1, j].imshow(overlay(rgb, maps[(r["image_id"], output)].astype(np.float32)))
        axes[1, j].contour(lesion, levels=[0.5], colors="w", linewidths=0.8)
        axes[1, j].set_title(f"{output} map ({r['target']}); peak {'on' if r['peak_in_lesion'] else 'OFF'} lesion",
                             fontsize=7)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(f"Grad-CAM ({output}) with the least mass on the lesion (white contour: dermatologists' mask)",
                 fontsize=9)
    return save_figure(fig, path)


def peak_figure(records: pd.DataFrame, path: Path, output: str = "bcc") -> Path | None:
    """Where the `output` maps' peaks fall in the network's view, on the lesion and off it, beside the lesions'
    own centres of mass would (the view's centre for a centred lesion): peaks piling up along one edge or in
    the outer ring of the Grad-CAM grid, whatever the lesion, are the network's (padding, the crop), not the
    picture's."""
    d = records[records["output"] == output]
    if d.empty:
        return None
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    on = d["peak_in_lesion"].astype(bool)
    ax.scatter(d.loc[on, "peak_x"], d.loc[on, "peak_y"], s=12, c="C2", alpha=0.6, label=f"on the lesion ({on.sum()})")
    ax.scatter(d.loc[~on, "peak_x"], d.loc[~on, "peak_y"], s=14, c="C3", marker="x", label=f"off it ({(~on).sum()})")
    grid = str(d["grid"].iloc[0])
    h, w = (int(v) for v in grid.split("x"))
    for k in range(1, w):
        ax.axvline(k / w, c="0.85", lw=0.6, zorder=0)
    for k in range(1, h):
        ax.axhline(k / h, c="0.85", lw=0.6, zorder=0)
    ax.set(xlim=(0, 1), ylim=(1, 0), aspect="equal", xlabel="x in the view", ylabel="y in the view",
           title=f"{output} map peaks ({len(d)} pictures; {grid} Grad-CAM grid;\n"
                 f"{d['peak_on_border'].astype(bool).mean():.0%} on its outer ring, {1 - (h - 2) * (w - 2) / (h * w):.0%} of its cells)")
    ax.title.set_fontsize(8)
    ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)


def lesion_report(run_dirs: Sequence[Path], dataset, figure: Path, outputs: Sequence[str] = ("bcc", "PN"),
                  threshold: float = 0.5) -> tuple[pd.DataFrame, pd.DataFrame, list[Path]] | None:
    """(summary per output, per-picture records, the figures: the worst pictures and the peaks' places) over
    the runs' test folds, each map for its predicted class at `threshold`; None when no test picture has a
    lesion mask."""
    records, maps = [], {}
    for d in run_dirs:
        r, m = run_records(d, dataset, outputs, threshold)
        if not r.empty:
            records.append(r)
            maps.update(m)
    if not records:
        return None
    table = pd.concat(records, ignore_index=True)
    figures = [worst_figure(table, maps, dataset, figure), peak_figure(table, figure.with_name("lesion_focus_peaks.png"))]
    return summarise(table), table, [f for f in figures if f is not None]
