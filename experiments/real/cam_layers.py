"""Would another Grad-CAM layer put the maps on PH2's lesions? Chosen on validation slices, reported on test folds.

The record's maps come from the network's last feature map (EfficientNet-Lite0's ``bn2``: 7 x 7 cells at
224 px, where the 8 maps have a closed form). The stride-16 stages hold a 14 x 14 grid, finer than most PH2
lesions' margins. For every fold's stage-3 model and each candidate layer (``backbone.gradcam_layer``), the
lesion focus of the report (``bcc.evaluation.lesion_focus``: mass on the lesion, the centre and flat
baselines, the pointing game) is measured twice:

- on the PH2 pictures of the fold's **validation slice** (``val_predictions.csv``), where the layer is chosen
  (highest mean mass on the lesion; ties by fewer peaks off it);
- on the fold's **test** pictures, where every layer is reported, the chosen one marked: the choice is not
  made on the figures it is judged by.

    python experiments/real/cam_layers.py outputs/real/efficientnet_lite0 --dataset data/real/merged \\
        --out experiments/real

writes ``cam_layers.csv`` (one row per split, layer and output), ``cam_layers_by_lesion_size.csv`` (the test
pictures in thirds of lesion size), ``cam_layers_per_image.csv`` and
``figures/cam_layers.png`` (the test pictures' mass on the lesion per layer against the centre baseline).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from bcc.core.layout import PREDICTIONS
from bcc.data.contract import load_dataset
from bcc.evaluation.figures import save_figure
from bcc.evaluation.lesion_focus import run_records

LAYERS = ("bn2", "blocks.6", "blocks.5", "blocks.4", "blocks.3")  # tf_efficientnet_lite0, last to first
SPLITS = {"validation": "val_predictions.csv", "test": PREDICTIONS}
OUTPUTS = ("bcc", "PN")
PER_IMAGE = ["split", "layer", "fold", "image_id", "output", "grid", "target", "share", "centre", "uniform",
             "peak_in_lesion", "lesion_area"]


def records(run_root: Path, dataset, layers=LAYERS) -> pd.DataFrame:
    """One row per (split, layer, PH2 picture, output) over every fold's stage-3 model."""
    rows = []
    for job in sorted(Path(run_root).glob("fold*/stage3")):
        for split, file in SPLITS.items():
            for layer in layers:
                r, _ = run_records(job, dataset, OUTPUTS, predictions=file, gradcam_layer=layer)
                rows.append(r.assign(split=split, layer=layer))
                print(f"{job.parent.name} {split:10s} {layer:8s} {len(r) // len(OUTPUTS):3d} pictures, "
                      f"bcc mass {r.loc[r['output'] == 'bcc', 'share'].mean():.3f}", flush=True)
    return pd.concat(rows, ignore_index=True)


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per split, layer and output: mean mass on the lesion and the centre's, the pictures beating the centre,
    the peaks off the lesion, the maps left empty by Grad-CAM's ReLU (no mass to place: left out of the means);
    and the spread of the mass over folds (sd of the fold means)."""
    g = rows.groupby(["split", "output", "layer"], sort=False)
    table = g.agg(grid=("grid", "first"), pictures=("image_id", "count"), share=("share", "mean"),
                  centre=("centre", "mean"), uniform=("uniform", "mean"),
                  beats_centre=("share", lambda s: float((s > rows.loc[s.index, "centre"]).mean())),
                  peaks_off=("peak_in_lesion", lambda v: float(1 - v.astype(bool).mean())),
                  empty_maps=("share", lambda s: int(s.isna().sum()))).reset_index()
    folds = rows.groupby(["split", "output", "layer", "fold"], sort=False)["share"].mean()
    table["share_sd_over_folds"] = folds.groupby(["split", "output", "layer"], sort=False).std().to_numpy()
    return mark_choice(table, "chosen_on_validation", ["share", "peaks_off"], [False, True])


def mark_choice(table: pd.DataFrame, column: str, by: list[str], ascending: list[bool], key: str = "layer"
                ) -> pd.DataFrame:
    """Set `column` True on every split's row of the `key` (per output) first on the validation rows in the
    order of `by` — chosen there, reported on test."""
    table[column] = False
    for output in table["output"].unique():
        val = table[(table["split"] == "validation") & (table["output"] == output)]
        best = val.sort_values(by, ascending=ascending)[key].iloc[0]
        table.loc[(table["output"] == output) & (table[key] == best), column] = True
    return table


def by_lesion_size(rows: pd.DataFrame) -> pd.DataFrame:
    """The test pictures in thirds of the lesion's share of the view: where the centre baseline is hard to beat
    (a large central lesion holds most of a centred Gaussian) and where the map's resolution tells (a small one
    spans two or three cells of a 7 x 7 grid)."""
    test = rows[rows["split"] == "test"].copy()
    test["lesion_size"] = pd.qcut(test["lesion_area"], 3, labels=["small", "middle", "large"])
    g = test.groupby(["output", "layer", "lesion_size"], sort=False, observed=True)
    return g.agg(pictures=("image_id", "count"), lesion_area=("lesion_area", "mean"), share=("share", "mean"),
                 centre=("centre", "mean"), uniform=("uniform", "mean"),
                 peaks_off=("peak_in_lesion", lambda v: float(1 - v.astype(bool).mean()))).reset_index()


def figure(rows: pd.DataFrame, table: pd.DataFrame, path: Path, what: str = "layer") -> None:
    """Per output, the test pictures' mass on the lesion for each of `what` (the rows' ``layer`` column)."""
    test = rows[rows["split"] == "test"]
    fig, axes = plt.subplots(1, len(OUTPUTS), figsize=(4.6 * len(OUTPUTS), 3.6), squeeze=False)
    for ax, output in zip(axes[0], OUTPUTS, strict=True):
        d = test[test["output"] == output]
        layers = list(dict.fromkeys(d["layer"]))
        ax.boxplot([d.loc[d["layer"] == la, "share"].dropna() for la in layers], showmeans=True)
        ax.axhline(d["centre"].mean(), c="C1", ls="--", lw=1, label=f"centre baseline {d['centre'].mean():.2f}")
        ax.axhline(d["uniform"].mean(), c="0.5", ls=":", lw=1, label=f"flat map {d['uniform'].mean():.2f}")
        t = table[(table["split"] == "test") & (table["output"] == output)].set_index("layer")
        ax.set_xticks(range(1, len(layers) + 1),
                      [f"{la}{' *' if t.loc[la, 'chosen_on_validation'] else ''}\n{t.loc[la, 'grid']}\n"
                       f"{t.loc[la, 'peaks_off']:.0%} peaks off" for la in layers], fontsize=7)
        ax.set(ylim=(0, 1), ylabel="mass on the lesion", title=f"{output} map on PH2 test pictures", xlabel=what)
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"Grad-CAM {what} (* chosen on the validation slices)", fontsize=9)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="<output_dir>/<backbone> folder holding fold*/stage3")
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--layers", nargs="+", default=list(LAYERS))
    args = parser.parse_args()
    rows = records(args.run, load_dataset(args.dataset), args.layers)
    rows[PER_IMAGE].to_csv(args.out / "cam_layers_per_image.csv", index=False, float_format="%.3f")
    table = summary(rows)
    table.to_csv(args.out / "cam_layers.csv", index=False, float_format="%.4f")
    figure(rows, table, args.out / "figures" / "cam_layers.png")
    sizes = by_lesion_size(rows)
    sizes.to_csv(args.out / "cam_layers_by_lesion_size.csv", index=False, float_format="%.4f")
    print(table.to_string(index=False))
    print(sizes[sizes["layer"] == table.loc[table["chosen_on_validation"], "layer"].iloc[0]].to_string(index=False))


if __name__ == "__main__":
    main()
