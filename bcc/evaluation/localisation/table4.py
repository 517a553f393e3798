"""Grad-CAM maps against the dermatologists' masks: the paper's Table 4 and Fig. 3 (§3.2.2), built so that it
tells a model that looks at the lesion's patterns from one that looks at the image centre.

``mask_report`` runs it for trained runs: the records (``records``: the model's maps of the
predicted class and the baselines against each mask and background), the deletion tests
(``faithfulness``: counterfactual twins, ROAD), the tables (``tables``) and Fig. 3 at the
median, best and worst map (``figure3``); ``describe`` says in words what the model's gaps are
against the baselines. How to read it all: docs/table4.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bcc.core.io import write_csv
from bcc.core.layout import PREDICTIONS
from bcc.core.patterns import OUTPUTS
from bcc.core.predictions import PROB_COLUMNS, read_predictions
from bcc.data.contract import load_dataset
from bcc.evaluation.localisation.figure3 import figure3, figure_choice
from bcc.evaluation.localisation.records import (
    Table4Settings,
    explained_network,
    lesion_mask,
    map_masks,
    predicted_class_cams,
    read_image,
    run_records,
)
from bcc.evaluation.localisation.statistics import effect_size_label
from bcc.evaluation.localisation.tables import baselines, faithfulness, per_head, statistics
from bcc.explanation.gradcam import postprocess

FILES = {"statistics": "table4.csv", "baselines": "table4_baselines.csv", "per_head": "table4_per_head.csv",
         "faithfulness": "table4_faithfulness.csv"}
PER_MAP, PER_IMAGE_FAITHFULNESS = "gradcam_per_image.csv", "table4_faithfulness_per_image.csv"
#: the statistics report.md shows (table4.csv has them all)
REPORT_COLUMNS = ("n_maps", "share_empty_maps", "mean_fg", "mean_bg", "gap", "auc", "intersection", "cohens_d_median",
                  "sig_ztest_bh", "sig_placement_bh", "mass_accuracy", "rank_accuracy", "pointing_game")


@dataclass
class Table4:
    """What ``mask_report`` computed: the four tables (``FILES``), the figures and what was left out, and why."""

    statistics: pd.DataFrame
    baselines: pd.DataFrame
    per_head: pd.DataFrame
    faithfulness: pd.DataFrame
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _draw(choice: pd.DataFrame, dataset, out_dir: Path, settings: Table4Settings) -> list[Path]:
    """Fig. 3 of each chosen record, the map recomputed with its run's network."""
    paths = []
    for run_dir, rec in choice.groupby("run_dir", sort=False):
        net = explained_network(run_dir, settings)
        preds = read_predictions(Path(run_dir) / PREDICTIONS).set_index("image_id")
        for _, r in rec.iterrows():
            rgb = read_image(dataset.image_path(r["image_id"]))
            _, cams, _ = predicted_class_cams(net, [rgb], preds.loc[[r["image_id"]], PROB_COLUMNS].to_numpy(np.float64),
                                              settings.threshold)
            z = postprocess(cams, rgb.shape[:2])[0, OUTPUTS.index(r["output"])].numpy()
            verdict = {True: "correct", False: "incorrect"}.get(r["correct"], "unlabelled")
            title = (f"{r['rank']} of {r['n_ranked']} {r['output']} maps by Cohen's d (Bg = {r['background']}): "
                     f"{r['image_id']}, fold {r['fold']}, map of the {r['target']} class ({verdict} prediction)\n"
                     f"d = {r['cohens_d']:.2f}, gap = {r['gap']:.2f}, placement p = {r['p_placement']:.3f} "
                     f"({r['n_placements']} placements)")
            paths.append(figure3(rgb, map_masks(dataset.masks[r["image_id"]])[r["output"]], z,
                                 out_dir / f"fig3_{r['rank']}_{r['image_id']}_{r['output']}.png", title,
                                 lesion=lesion_mask(dataset.masks[r["image_id"]])))
    return paths


def _notes(records: pd.DataFrame, twins: pd.DataFrame, settings: Table4Settings) -> list[str]:
    notes = []
    if not (records["background"] == "lesion").any():
        notes.append("No lesion masks (`masks/<id>_lesion.png`) for these images: the rows with Bg = lesion minus "
                     "mask and the uniform-in-lesion baseline are missing; the placement test moves the mask "
                     "over the whole image, which a map that is merely on the lesion passes.")
    if twins.empty:
        notes.append("No counterfactual twins (`twins/<id>.png`) for these images: no twin deletion test.")
    if settings.road_images <= 0:
        notes.append("ROAD not computed (eval.table4.road_images = 0).")
    if not (records["map"] == "shuffled_mask").any():
        notes.append("Fewer than two images per output with a mask: no shuffled-mask baseline.")
    return notes


def mask_report(run_dirs: list[Path], dataset_root: Path, out_dir: Path,
                settings: Table4Settings | None = None) -> Table4 | None:
    """Table 4, its deletion tests and Fig. 3 for stage-3 runs (one per fold: ``best.ckpt`` + test-fold
    ``predictions.csv``); None (nothing written) when no test image of these runs has a mask.

    Writes into `out_dir`: ``FILES`` (``table4.csv`` statistics, ``table4_baselines.csv``,
    ``table4_per_head.csv``, ``table4_faithfulness.csv``; columns: ``tables``), ``gradcam_per_image.csv``
    (every record, without the PDFs), ``table4_faithfulness_per_image.csv`` (twins and ROAD per image)
    and ``figures/fig3_<rank>_<image_id>_<output>.png`` for rank median, best, worst.
    """
    settings, out_dir = settings or Table4Settings(), Path(out_dir)
    dataset = load_dataset(Path(dataset_root), allow_outside=settings.allow_outside)
    if not dataset.masks:
        return None
    parts = [run_records(Path(d), dataset, settings) for d in run_dirs]
    records, twins, road = (pd.concat([p[k] for p in parts if not p[k].empty], ignore_index=True)
                            if any(not p[k].empty for p in parts) else pd.DataFrame() for k in range(3))
    if records.empty:
        return None
    result = Table4(statistics(records), baselines(records), per_head(records), faithfulness(twins, road),
                    notes=_notes(records, twins, settings))
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, file in FILES.items():
        write_csv(getattr(result, name), out_dir / file)
    write_csv(records.drop(columns=["pdf_fg", "pdf_bg", "run_dir"]), out_dir / PER_MAP)
    write_csv(pd.concat([twins.assign(test="twin_deletion"), road.assign(test="road")], ignore_index=True),
              out_dir / PER_IMAGE_FAITHFULNESS)
    result.figures = _draw(figure_choice(records, settings.max_figures), dataset, out_dir / "figures", settings)
    return result


def read_tables(out_dir: Path) -> dict[str, pd.DataFrame]:
    """The tables ``mask_report`` wrote into `out_dir` (``FILES``), for the report."""
    return {name: pd.read_csv(Path(out_dir) / file) for name, file in FILES.items() if (Path(out_dir) / file).is_file()}


# ---- in words -------------------------------------------------------------------------------------------
ROWS_IN_WORDS = (
    "Rows: `gradcam` is the model's Grad-CAM of the predicted class (the negative logit's map where it predicts "
    "BCC or a pattern absent); `centre` (a centred Gaussian), `uniform_lesion` (1 on the whole lesion) and "
    "`shuffled_mask` (the model's map against another image's mask) are what uninformed maps score. Bg `image` "
    "is the paper's (image minus mask), `lesion` is lesion minus mask; `gap` = mean z in the mask minus in Bg, "
    "`auc` = chance that a mask pixel is hotter than a Bg pixel (blind to the map's contrast); "
    "`sig_placement_*` = share of images where the mask's place is hotter than other places of its shape "
    "(spatial dependence respected), `sig_ztest_*` = the paper's pixel z-test, one-sided (docs/table4.md).")
BASELINE_WORDS = {"centre": "centre", "uniform_lesion": "uniform-in-lesion", "shuffled_mask": "shuffled mask"}


def _p(p: float) -> str:
    return "–" if not np.isfinite(p) else f"{p:.2g}"


def _num(x: float) -> str:
    return "–" if not np.isfinite(x) else f"{x:.3f}"


def _beats(rows: pd.DataFrame, alpha: float = 0.05) -> bool:
    """The model is above a baseline when its gap and its AUC are both higher (one-sided Wilcoxon, `alpha`)."""
    return len(rows) == 2 and all(r["mean_difference"] > 0 and np.isfinite(r["p_wilcoxon"]) and r["p_wilcoxon"] < alpha
                                  for _, r in rows.iterrows())


def describe(result: Table4) -> str:
    """The paragraph under Table 4: what the rows are, the model's gap and AUC against each baseline (with
    the verdict on the lesion background where there is one), the per-head and deletion tests, what is missing."""
    words = [ROWS_IN_WORDS]
    s = result.statistics.set_index(["map", "kind", "background", "group"])
    b = result.baselines
    for (kind, bg), rows in b.groupby(["kind", "background"], sort=False):
        model = s.loc[("gradcam", kind, bg, "all")]
        against = []
        for baseline, r in rows.groupby("baseline", sort=False):
            gap, auc = r.set_index("statistic").loc["gap"], r.set_index("statistic").loc["auc"]
            against.append(f"{BASELINE_WORDS[baseline]} {gap['baseline_value']:.2f} / {auc['baseline_value']:.2f} "
                           f"(model's gap higher on {gap['share_greater']:.0%}, p = {_p(gap['p_wilcoxon'])}; "
                           f"AUC p = {_p(auc['p_wilcoxon'])})")
        empty = f", {model['share_empty_maps']:.0%} of maps 0 everywhere" if model["share_empty_maps"] > 0 else ""
        words.append(f"{kind.capitalize()} maps, Bg = {bg}: model gap / AUC {model['gap']:.2f} / {model['auc']:.2f} "
                     f"(median d {model['cohens_d_median']:.2f}, {effect_size_label(model['cohens_d_median'])}{empty}) "
                     f"vs " + ", ".join(against) + ".")
    if not b.empty:
        bg = "lesion" if (b["background"] == "lesion").any() else "image"
        d = b[(b["kind"] == "diagnosis") & (b["background"] == bg)]
        lost = [BASELINE_WORDS[name] for name, r in d.groupby("baseline", sort=False) if not _beats(r)]
        head = f"Verdict (diagnosis maps, Bg = {bg}; above = gap and AUC both higher, one-sided Wilcoxon p < 0.05):"
        if len(d):
            words.append(f"{head} the model is above every baseline." if not lost else
                         f"{head} the model is not above the {', '.join(lost)} baseline(s), so these maps do not show "
                         "it looking at the patterns rather than at what that baseline marks.")
    h = result.per_head.set_index("output")
    if "all" in h.index:
        a = h.loc["all"]
        words.append(f"Pattern heads: mean z in the own mask {a['mean_own']:.2f} vs the other patterns' masks "
                     f"{a['mean_other']:.2f} (own higher on {a['share_own_above']:.0%} of {int(a['n_maps'])}, "
                     f"p = {_p(a['p_wilcoxon'])}; centre map's gap {a['gap_centre']:.2f}).")
    for _, f in result.faithfulness.iterrows():
        if f["test"] == "twin_deletion":
            words.append(f"Twins without the patterns: p(BCC) fell on {f['share_positive']:.0%} of {int(f['n'])} "
                         f"{f['subject']} ({f['mean_before']:.2f} → {f['mean_after']:.2f}, p = {_p(f['p_wilcoxon'])}).")
        else:
            words.append(f"ROAD {f['subject']}: {_num(f['mean'])} (n = {int(f['n'])}, p = {_p(f['p_wilcoxon'])}).")
    return " ".join(words + result.notes)
