"""Is the 7 x 7 grid what keeps the maps off PH2's small lesions? Maps averaged over shifted and flipped inputs.

``cam_layers.py`` found the record's layer (``bn2``) the best on the validation slices and every finer layer
worse on test; most peaks off the lesion are on small lesions, two or three cells of the 7 x 7 grid. A finer
grid from the same layer: the picture shifted by half a cell (16 px at 224 px: ``shifts``, 9 passes) lays
the cells over it at other places, and the average of the shifted-back maps places mass at a resolution the
grid alone cannot. Flips (``flips``, 4 passes) change the network's view, not the grid (224 is 7 whole cells).
Each variant's maps are the pytorch-grad-cam post-processing (ReLU, min-max, resize to the input) of each
pass, moved back onto the unshifted input, averaged over passes, then resized onto the view of the picture as
the record's are; ``single`` is one pass through the same path (the record's maps, resized twice).

As ``cam_layers.py``: chosen on the PH2 pictures of each fold's **validation slice**, judged on its **test**
pictures; measures of ``bcc.evaluation.lesion_focus`` (mass on the lesion, centre and flat baselines, the
pointing game).

    python experiments/real/cam_shifts.py outputs/real/efficientnet_lite0 --dataset data/real/merged \\
        --out experiments/real

writes ``cam_shifts.csv`` (split x variant x output), ``cam_shifts_by_lesion_size.csv`` (test pictures in
thirds of lesion size), ``cam_shifts_paired.csv`` (each variant against ``single`` on the same test
pictures), ``cam_shifts_per_image.csv`` and ``figures/cam_shifts.png``.
"""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from statsmodels.stats.contingency_tables import mcnemar

from bcc.core.layout import BEST
from bcc.core.patterns import OUTPUTS
from bcc.core.predictions import PROB_COLUMNS, read_predictions
from bcc.data.contract import LESION, load_dataset
from bcc.data.images import read_mask, shrink, to_input, view_region
from bcc.evaluation.lesion_focus import WORK_SIDE, picture_records
from bcc.evaluation.localisation.baselines import fit_mask
from bcc.evaluation.localisation.records import predicted_signs, read_image, signed_cams
from bcc.explanation.gradcam import postprocess, raw_cams
from bcc.models.checkpoint import load_network

OUTPUT_NAMES = ("bcc", "PN")


def _sibling(name: str):
    """A script beside this one as a module (experiments are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cam_layers = _sibling("cam_layers")  # its splits, summary, size thirds and figure


def passes(variant: str, cell: int) -> list[tuple[int, int, bool, bool]]:
    """(dy, dx, flip up-down, flip left-right) of each pass of `variant`; `cell` the grid's stride in pixels."""
    half = cell // 2
    return {"single": [(0, 0, False, False)],
            "flips": [(0, 0, v, h) for v in (False, True) for h in (False, True)],
            "shifts": [(dy, dx, False, False) for dy in (-half, 0, half) for dx in (-half, 0, half)]}[variant]


def _moved(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """`x` (N, C, H, W) moved by (dy, dx) pixels, the uncovered border filled by reflection."""
    p = max(abs(dy), abs(dx))
    if p == 0:
        return x
    padded = F.pad(x, (p, p, p, p), mode="reflect")
    h, w = x.shape[-2:]
    return padded[..., p - dy:p - dy + h, p - dx:p - dx + w]


def one_pass(net, x: torch.Tensor, signs: np.ndarray, dy: int, dx: int, up_down: bool, left_right: bool
             ) -> torch.Tensor:
    """Predicted-class maps (N, 8, S, S) in [0, 1] of `x` moved and flipped, put back onto `x`."""
    dims = [d for d, f in ((-2, up_down), (-1, left_right)) if f]
    xi = _moved(x, dy, dx)
    m = postprocess(signed_cams(raw_cams(net, xi.flip(dims) if dims else xi)[0], signs), x.shape[-2:])
    return _moved(m.flip(dims) if dims else m, -dy, -dx)


def averaged_maps(net, x: torch.Tensor, signs: np.ndarray, variant: str, cell: int) -> torch.Tensor:
    """Predicted-class maps (N, 8, S, S) in [0, 1] on the input, averaged over `variant`'s passes."""
    moves = passes(variant, cell)
    return sum(one_pass(net, x, signs, *move) for move in moves) / len(moves)


def records(run_root: Path, dataset, variants=("single", "flips", "shifts"), threshold: float = 0.5,
            batch_size: int = 16) -> pd.DataFrame:
    """One row per (split, variant, fold, PH2 picture, output) over every fold's stage-3 model."""
    splits = cam_layers.SPLITS
    rows = []
    for job in sorted(Path(run_root).glob("fold*/stage3")):
        net = load_network(job / BEST)
        outputs = [o for o in OUTPUT_NAMES if net.trained[OUTPUTS.index(o)]]
        grid: tuple[int, ...] = ()  # the model's Grad-CAM grid, read off its first batch
        for split, file in splits.items():
            preds = read_predictions(job / file).set_index("image_id")
            ids = [i for i in preds.index if LESION in dataset.masks.get(i, {})]
            for start in range(0, len(ids), batch_size):
                chunk = ids[start:start + batch_size]
                rgbs = [shrink(read_image(dataset.image_path(i)), WORK_SIDE) for i in chunk]
                aspects = [dataset.aspect(i) for i in chunk]
                x = torch.stack([to_input(rgb, net.preprocess, a) for rgb, a in zip(rgbs, aspects, strict=True)])
                signs = predicted_signs(np.nan_to_num(preds.loc[chunk, PROB_COLUMNS].to_numpy(np.float64)), threshold)
                grid = grid or tuple(int(s) for s in raw_cams(net, x[:1])[0].shape[-2:])
                for variant in variants:
                    maps = averaged_maps(net, x, signs, variant, cell=x.shape[-1] // grid[1])
                    for k, (image_id, rgb) in enumerate(zip(chunk, rgbs, strict=True)):
                        region = view_region(rgb.shape[:2], net.preprocess, aspects[k])
                        on_picture = _onto_picture(maps[k], rgb.shape[:2], region)
                        lesion = fit_mask(read_mask(dataset.masks[image_id][LESION]), rgb.shape[:2])
                        for rec in picture_records(on_picture, lesion, region, outputs, grid):
                            rows.append({"split": split, "variant": variant, "fold": int(preds.loc[image_id, "fold"]),
                                         "image_id": image_id, "grid": f"{grid[0]}x{grid[1]}",
                                         "target": "positive" if signs[k, OUTPUTS.index(rec["output"])] > 0
                                         else "negative", **rec})
            print(f"{job.parent.name} {split:10s} {len(ids):3d} pictures", flush=True)
    return pd.DataFrame(rows)


def _onto_picture(maps: torch.Tensor, shape: tuple[int, int], region: tuple[int, int, int, int]) -> np.ndarray:
    """Maps (8, S, S) on the input resized onto the part of an (H, W) picture the network saw, 0 elsewhere.
    Not ``maps_on_picture``: that one post-processes raw maps, and a second min-max of an average moves mass."""
    top, left, h, w = region
    out = np.zeros((maps.shape[0], *shape), np.float32)
    out[:, top:top + h, left:left + w] = F.interpolate(maps[None], size=(h, w), mode="bilinear",
                                                       align_corners=False)[0].clamp(0, 1).numpy()
    return out


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """``cam_layers.summary`` with the variant in the layer's place (``chosen_on_validation``: by mass on the
    lesion), and ``chosen_by_pointing``: the variant with the fewest validation peaks off the lesion (ties by
    mass) — the issue's two targets are two measures, each chosen on validation by its own; the spread of the
    peaks off over folds (sd of the fold shares)."""
    table = cam_layers.summary(rows.rename(columns={"variant": "layer"})).rename(columns={"layer": "variant"})
    off = 1 - rows.assign(hit=rows["peak_in_lesion"].astype(bool)).groupby(
        ["split", "output", "variant", "fold"], sort=False)["hit"].mean()
    table["peaks_off_sd_over_folds"] = off.groupby(["split", "output", "variant"], sort=False).std().to_numpy()
    return cam_layers.mark_choice(table, "chosen_by_pointing", ["peaks_off", "share"], [True, False], key="variant")


def paired(rows: pd.DataFrame, reference: str = "single") -> pd.DataFrame:
    """On the test pictures, each variant against `reference`, picture by picture: the peaks it moves onto the
    lesion (``fixed``) and off it (``broken``), with McNemar's exact p (the same pictures, so paired)."""
    test = rows[rows["split"] == "test"]
    out = []
    for output, d in test.groupby("output", sort=False):
        hit = d.pivot_table(index=["fold", "image_id"], columns="variant", values="peak_in_lesion", aggfunc="first")
        for variant in [v for v in hit.columns if v != reference]:
            fixed = int((~hit[reference].astype(bool) & hit[variant].astype(bool)).sum())
            broken = int((hit[reference].astype(bool) & ~hit[variant].astype(bool)).sum())
            p = mcnemar([[0, fixed], [broken, 0]], exact=True).pvalue if fixed + broken else float("nan")
            out.append({"output": output, "variant": variant, "against": reference, "pictures": len(hit),
                        "fixed": fixed, "broken": broken, "mcnemar_p": p})
    return pd.DataFrame(out)


def by_lesion_size(rows: pd.DataFrame) -> pd.DataFrame:
    return cam_layers.by_lesion_size(rows.rename(columns={"variant": "layer"})).rename(columns={"layer": "variant"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="<output_dir>/<backbone> folder holding fold*/stage3")
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = records(args.run, load_dataset(args.dataset))
    rows[["split", "variant", "fold", "image_id", "output", "grid", "target", "share", "centre", "uniform",
          "peak_in_lesion", "lesion_area"]].to_csv(args.out / "cam_shifts_per_image.csv", index=False,
                                                   float_format="%.3f")
    table = summary(rows)
    table.to_csv(args.out / "cam_shifts.csv", index=False, float_format="%.4f")
    sizes = by_lesion_size(rows)
    sizes.to_csv(args.out / "cam_shifts_by_lesion_size.csv", index=False, float_format="%.4f")
    cam_layers.figure(rows.rename(columns={"variant": "layer"}), table.rename(columns={"variant": "layer"}),
                         args.out / "figures" / "cam_shifts.png", what="passes")
    pairs = paired(rows)
    pairs.to_csv(args.out / "cam_shifts_paired.csv", index=False, float_format="%.4g")
    print(table.to_string(index=False))
    print(sizes.to_string(index=False))
    print(pairs.to_string(index=False))


if __name__ == "__main__":
    main()
