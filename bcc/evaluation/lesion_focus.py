"""Does Grad-CAM look at the lesion? Real pictures against dermatologists' whole-lesion masks (PH2).

Real dermoscopy carries what the literature reports as shortcuts: rulers, ink marks, hair, the black
vignette of the dermatoscope's corners. A model that keys on them puts its Grad-CAM mass there. Per test
picture with a lesion mask (``masks/<id>_lesion.png``) and per map — the diagnosis head's and each trained
pattern head's, for its predicted class (as Table 4) — over the part of the picture the network saw
(``bcc.data.images.view_region``):

- ``share``: the map's mass inside the lesion, ``Σ map·lesion / Σ map``;
- the same share for three maps that know nothing of the picture: ``uniform`` (flat over the view: the
  lesion's area share, chance), ``centre`` (a centred Gaussian, sd ¼ of the side: most lesions are
  photographed in the middle, so this is the bar a map must clear to show it follows *this* lesion) and
  ``lesion`` (flat over the lesion: 1, the ceiling);
- ``peak_in_lesion``: whether the map's maximum lies on the lesion. A peak off it is the shortcut signature;
  :func:`worst_figure` shows the pictures whose maps hold the least mass on the lesion.
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
from bcc.evaluation.localisation.baselines import centre_map, fit_mask
from bcc.evaluation.localisation.records import predicted_class_cams, read_image
from bcc.explanation.gradcam import maps_on_picture
from bcc.explanation.render import overlay
from bcc.models.checkpoint import load_network

WORK_SIDE = 256  # statistics at this longer side: maps hold nothing finer than a feature cell


def _share(m: np.ndarray, inside: np.ndarray) -> float:
    total = float(m.sum())
    return float((m * inside).sum()) / total if total > 0 else float("nan")


def picture_records(maps: np.ndarray, lesion: np.ndarray, region: tuple[int, int, int, int],
                    outputs: Sequence[str]) -> list[dict]:
    """Records of one picture: `maps` (8, H, W) in [0, 1] on the picture, its `lesion` (H, W) bool, the
    `region` the network saw (top, left, height, width); one row per output in `outputs`."""
    top, left, h, w = region
    view = np.zeros(lesion.shape, bool)
    view[top:top + h, left:left + w] = True
    centre = np.zeros(lesion.shape)
    centre[top:top + h, left:left + w] = centre_map((h, w))
    seen = lesion & view
    rows = []
    for o in outputs:
        m = maps[OUTPUTS.index(o)]
        peak = np.unravel_index(int(np.argmax(m)), m.shape)
        rows.append({"output": o, "share": _share(m, lesion), "uniform": _share(view.astype(float), lesion),
                     "centre": _share(centre, lesion), "lesion": 1.0 if seen.any() else float("nan"),
                     "peak_in_lesion": bool(lesion[peak]), "lesion_area": float(seen.sum() / view.sum())})
    return rows


def run_records(run_dir: Path, dataset, outputs: Sequence[str] = ("bcc",), threshold: float = 0.5,
                batch_size: int = 16) -> pd.DataFrame:
    """One row per (test picture with a lesion mask, output in `outputs` the model was trained on)."""
    run_dir = Path(run_dir)
    preds = read_predictions(run_dir / PREDICTIONS)
    ids = [i for i in preds["image_id"] if LESION in dataset.masks.get(i, {})]
    if not ids:
        return pd.DataFrame()
    net = load_network(run_dir / BEST)
    outputs = [o for o in outputs if net.trained[OUTPUTS.index(o)]]
    preds = preds.set_index("image_id").loc[ids]
    rows = []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        rgbs = [shrink(read_image(dataset.image_path(i)), WORK_SIDE) for i in chunk]
        aspects = [dataset.aspect(i) for i in chunk]
        p = preds.loc[chunk, PROB_COLUMNS].to_numpy(np.float64)
        _, cams, signs = predicted_class_cams(net, rgbs, np.nan_to_num(p, nan=0.0), threshold, aspects)
        for k, (image_id, rgb) in enumerate(zip(chunk, rgbs, strict=True)):
            lesion = fit_mask(read_mask(dataset.masks[image_id][LESION]), rgb.shape[:2])
            maps = maps_on_picture(cams[k:k + 1], rgb.shape[:2], net.preprocess, aspects[k])[0].numpy()
            region = view_region(rgb.shape[:2], net.preprocess, aspects[k])
            for rec in picture_records(maps, lesion, region, outputs):
                o = rec["output"]
                rows.append({"image_id": image_id, "fold": int(preds.loc[image_id, "fold"]), "run_dir": str(run_dir),
                             "target": "positive" if signs[k, OUTPUTS.index(o)] > 0 else "negative", **rec})
    return pd.DataFrame(rows)


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


def worst_figure(records: pd.DataFrame, dataset, path: Path, output: str = "bcc", n: int = 6) -> Path | None:
    """The `n` pictures whose `output` map holds the least mass on the lesion: picture, map overlay, lesion
    contour — what the model looked at instead."""
    d = records[records["output"] == output].nsmallest(n, "share")
    if d.empty:
        return None
    fig, axes = plt.subplots(2, len(d), figsize=(2.6 * len(d), 5.4), squeeze=False)
    for j, (_, r) in enumerate(d.iterrows()):
        rgb = shrink(read_image(dataset.image_path(r["image_id"])), WORK_SIDE)
        net = load_network(Path(r["run_dir"]) / BEST)
        p = read_predictions(Path(r["run_dir"]) / PREDICTIONS).set_index("image_id").loc[[r["image_id"]], PROB_COLUMNS]
        aspect = dataset.aspect(r["image_id"])
        _, cams, _ = predicted_class_cams(net, [rgb], np.nan_to_num(p.to_numpy(np.float64)), 0.5, [aspect])
        m = maps_on_picture(cams, rgb.shape[:2], net.preprocess, aspect)[0, OUTPUTS.index(output)].numpy()
        lesion = fit_mask(read_mask(dataset.masks[r["image_id"]][LESION]), rgb.shape[:2])
        axes[0, j].imshow(rgb)
        axes[0, j].contour(lesion, levels=[0.5], colors="w", linewidths=0.8)
        axes[0, j].set_title(f"{r['image_id']}\nshare {r['share']:.2f} (centre {r['centre']:.2f})", fontsize=7)
        axes[1, j].imshow(overlay(rgb, m))
        axes[1, j].contour(lesion, levels=[0.5], colors="w", linewidths=0.8)
        axes[1, j].set_title(f"{output} map ({r['target']}); peak {'on' if r['peak_in_lesion'] else 'OFF'} lesion",
                             fontsize=7)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(f"Grad-CAM ({output}) with the least mass on the lesion (white contour: dermatologists' mask)",
                 fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def lesion_report(run_dirs: Sequence[Path], dataset, figure: Path, outputs: Sequence[str] = ("bcc", "PN")
                  ) -> tuple[pd.DataFrame, pd.DataFrame, Path | None] | None:
    """(summary per output, per-picture records, the worst pictures' figure) over the runs' test folds; None
    when no test picture has a lesion mask."""
    frames = [run_records(d, dataset, outputs) for d in run_dirs]
    records = pd.concat([f for f in frames if not f.empty], ignore_index=True) if any(not f.empty for f in frames) \
        else pd.DataFrame()
    if records.empty:
        return None
    return summarise(records), records, worst_figure(records, dataset, figure)
