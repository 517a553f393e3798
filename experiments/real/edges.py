"""Why do Grad-CAM's worst maps on PH2 sit on the edge of the crop? Three controls on the same pictures.

For every PH2 test picture of a run (each fold's stage-3 model on its own test fold), the diagnosis map of
its predicted class (as the report's lesion focus) is taken three ways:

- ``as seen``: the network's input as in training (the centre square of the picture, resized);
- ``padded``: the same square reflect-padded by one Grad-CAM cell on every side before the resize — the
  network's zero padding and its grid's outer ring now lie on the mirrored margin, not on the picture. Peaks
  that stay on the outer ring (in the mirror) are the network's border; peaks that move inside follow the
  picture;
- ``whole picture``: the whole 768 x 560 frame squashed to the input (no crop) — peaks that stay at the
  former crop's edge follow the picture's content there (the surrounding skin, the vignette), peaks that
  move to the new border follow the network's border.

And for each peak, the luminance there against the picture's (the dermatoscope's dark vignette is the
darkest part of a PH2 frame): a peak in the darkest tenth of the pixels points at the vignette.

    python experiments/real/edges.py outputs/real/efficientnet_lite0 outputs/real/controls/mobilenet_scratch_112/mobilenet \\
        --dataset data/real/merged --out experiments/real

writes ``edges.csv`` (one row per picture, run and way), ``edges_summary.csv`` and ``figures/edges.png``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from bcc.core.layout import BEST, PREDICTIONS
from bcc.core.patterns import OUTPUTS
from bcc.core.predictions import PROB_COLUMNS, read_predictions
from bcc.data.contract import LESION, load_dataset
from bcc.data.images import Preprocess, network_view, read_mask, shrink, view_region
from bcc.evaluation.figures import save_figure
from bcc.evaluation.localisation.baselines import fit_mask
from bcc.evaluation.localisation.records import predicted_signs, read_image, signed_cams
from bcc.explanation.gradcam import postprocess, raw_cams
from bcc.models.checkpoint import load_network

WORK_SIDE = 256
BCC = OUTPUTS.index("bcc")


def _map(net, view: np.ndarray, sign: float, out_hw: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """The bcc map of the predicted class for an RGB `view` (the network's input made from it with its own
    size and colour constancy), upsampled to `out_hw`; and the Grad-CAM grid."""
    pre = net.preprocess
    x = torch.from_numpy(network_view(view, Preprocess(pre.size, "square", pre.colour)).copy()).permute(2, 0, 1)
    cams, _ = raw_cams(net, x[None].float().div_(255.0))
    signed = signed_cams(cams, np.array([[sign] * len(OUTPUTS)]))
    return postprocess(signed, out_hw)[0, BCC].numpy(), tuple(cams.shape[-2:])


def _peak(m: np.ndarray) -> tuple[float, float, int, int]:
    py, px = np.unravel_index(int(np.argmax(m)), m.shape)
    return (py + 0.5) / m.shape[0], (px + 0.5) / m.shape[1], int(py), int(px)


def _on_ring(y: float, x: float, grid: tuple[int, int]) -> bool:
    return min(y * grid[0], x * grid[1], (1 - y) * grid[0], (1 - x) * grid[1]) < 1


def picture_rows(net, rgb: np.ndarray, lesion: np.ndarray, sign: float, aspect: float | None) -> list[dict]:
    """One row per way: the peak's place in the network's input (``peak_y``/``peak_x`` in 0..1 of it), whether it
    lies on the outer ring of its Grad-CAM grid, on the lesion, in the padded margin, in the darkest tenth of the
    frame; the map's mass on the lesion."""
    top, left, h, w = view_region(rgb.shape[:2], net.preprocess, aspect)
    luminance = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    dark_level = np.quantile(luminance, 0.1)
    crop = rgb[top:top + h, left:left + w]
    pad = None
    rows = []
    for way in ("as seen", "padded", "whole picture"):
        if way == "as seen":
            picture, lum, les = crop, luminance[top:top + h, left:left + w], lesion[top:top + h, left:left + w]
        elif way == "padded":  # one Grad-CAM cell of mirrored picture on every side
            picture = np.pad(crop, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
            lum = np.pad(luminance[top:top + h, left:left + w], pad, mode="reflect")
            les = np.pad(lesion[top:top + h, left:left + w], pad, mode="constant")  # the mirror holds no lesion
        else:
            picture, lum, les = rgb, luminance, lesion
        m, grid = _map(net, picture, sign, picture.shape[:2])
        if pad is None:
            pad = round(h / grid[0])
        y, x, py, px = _peak(m)
        total = float(m.sum())
        margin = way == "padded" and not (pad <= py < pad + h and pad <= px < pad + w)
        outside_crop = way == "whole picture" and not (top <= py < top + h and left <= px < left + w)
        rows.append({"way": way, "peak_y": y, "peak_x": x, "grid": f"{grid[0]}x{grid[1]}",
                     "peak_on_border": _on_ring(y, x, grid), "peak_in_lesion": bool(les[py, px]),
                     "share": float((m * les).sum()) / total if total > 0 else np.nan,
                     "peak_dark": bool(lum[py, px] <= dark_level), "peak_in_margin": bool(margin),
                     "peak_outside_crop": bool(outside_crop)})
    return rows


def run_rows(run_root: Path, dataset) -> pd.DataFrame:
    """Every fold's stage-3 model on its own PH2 test pictures."""
    rows = []
    for job in sorted(Path(run_root).glob("fold*/stage3")):
        if not (job / BEST).is_file():
            continue
        net = load_network(job / BEST, channels_last=False)
        preds = read_predictions(job / PREDICTIONS).set_index("image_id")
        ids = [i for i in preds.index if LESION in dataset.masks.get(i, {})]
        signs = predicted_signs(np.nan_to_num(preds.loc[ids, PROB_COLUMNS].to_numpy(np.float64)), 0.5)
        for image_id, sign in zip(ids, signs[:, BCC], strict=True):
            rgb = shrink(read_image(dataset.image_path(image_id)), WORK_SIDE)
            lesion = fit_mask(read_mask(dataset.masks[image_id][LESION]), rgb.shape[:2])
            for r in picture_rows(net, rgb, lesion, float(sign), dataset.aspect(image_id)):
                rows.append({"run": str(run_root), "fold": job.parent.name, "image_id": image_id, **r})
    return pd.DataFrame(rows)


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    g = rows.groupby(["run", "way"], sort=False)
    return g.agg(pictures=("image_id", "count"), peaks_on_border=("peak_on_border", "mean"),
                 peaks_off_lesion=("peak_in_lesion", lambda v: 1 - v.mean()), share=("share", "mean"),
                 peaks_dark=("peak_dark", "mean"), peaks_in_margin=("peak_in_margin", "mean"),
                 peaks_outside_crop=("peak_outside_crop", "mean")).reset_index()


def figure(rows: pd.DataFrame, path: Path) -> None:
    runs, ways = list(dict.fromkeys(rows["run"])), ["as seen", "padded", "whole picture"]
    fig, axes = plt.subplots(len(runs), 3, figsize=(9.6, 3.3 * len(runs)), squeeze=False)
    for i, run in enumerate(runs):
        for j, way in enumerate(ways):
            d, ax = rows[(rows["run"] == run) & (rows["way"] == way)], axes[i, j]
            on = d["peak_in_lesion"].astype(bool)
            ax.scatter(d.loc[on, "peak_x"], d.loc[on, "peak_y"], s=8, c="C2", alpha=0.6, label="on the lesion")
            ax.scatter(d.loc[~on, "peak_x"], d.loc[~on, "peak_y"], s=10, c="C3", marker="x", label="off it")
            h, w = (int(v) for v in d["grid"].iloc[0].split("x"))
            for k in range(1, w):
                ax.axvline(k / w, c="0.85", lw=0.5, zorder=0)
            for k in range(1, h):
                ax.axhline(k / h, c="0.85", lw=0.5, zorder=0)
            ax.set(xlim=(0, 1), ylim=(1, 0), aspect="equal", xticks=[], yticks=[])
            ax.set_title(f"{Path(run).parent.name}/{Path(run).name}: {way}\n{d['peak_on_border'].mean():.0%} on the "
                         f"border ring, {1 - on.mean():.0%} off the lesion", fontsize=7)
        axes[i, 0].legend(fontsize=6, loc="lower right")
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="<output_dir>/<backbone> folders holding fold*/stage3")
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    dataset = load_dataset(args.dataset)
    rows = pd.concat([run_rows(r, dataset) for r in args.runs], ignore_index=True)
    rows.to_csv(args.out / "edges.csv", index=False, float_format="%.4f")
    table = summary(rows)
    table.to_csv(args.out / "edges_summary.csv", index=False, float_format="%.4f")
    figure(rows, args.out / "figures" / "edges.png")
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
