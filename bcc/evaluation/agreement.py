"""The dataset section of the report: size, prevalence, inter-rater agreement and rater quality.

Fleiss' kappa per code comes from ``bcc.data.consensus.fleiss_kappa_per_code`` on the raw ``annotations.csv``
(images every rater rated for that code); rater quality is the EM estimate the consensus step wrote to
``rater_quality.csv`` next to the dataset. Nothing here re-runs the consensus.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bcc.core.patterns import CODES
from bcc.data.consensus import fleiss_kappa_per_code, ratings_array
from bcc.data.contract import LESION
from bcc.evaluation.markdown import markdown_table


@dataclass
class DatasetSummary:
    root: Path | None
    n_images: int | None = None
    n_raters: int | None = None
    prevalence: pd.DataFrame | None = None       # code → consensus positives, share
    kappa: pd.Series | None = None               # code → Fleiss' kappa
    rater_quality: pd.DataFrame | None = None    # rater × (sensitivity, specificity) per code
    has_masks: bool = False          # pattern masks (masks/<id>_<CODE>.png)
    has_lesion_masks: bool = False   # whole-lesion masks (masks/<id>_lesion.png), e.g. PH2's
    notes: list[str] = field(default_factory=list)


def summarise_dataset(root: str | Path | None) -> DatasetSummary:
    """Everything the report says about the dataset at `root`; missing files become notes, not errors."""
    if root is None:
        return DatasetSummary(None, notes=["the runs' config names no dataset (data.root)"])
    root = Path(root)
    out = DatasetSummary(root)
    if not (root / "images.csv").is_file():
        out.notes.append(f"{root}/images.csv not found: dataset section left out (eval.dataset=<dir> points at it)")
        return out
    images = pd.read_csv(root / "images.csv", dtype=str, keep_default_na=False)
    out.n_images = len(images)
    masks = [m.stem for m in (root / "masks").glob("*.png")] if (root / "masks").is_dir() else []
    out.has_lesion_masks = any(m.endswith(f"_{LESION}") for m in masks)
    out.has_masks = any(not m.endswith(f"_{LESION}") for m in masks)
    ann_path = root / "annotations.csv"
    if ann_path.is_file():
        ann = pd.read_csv(ann_path, dtype={"image_id": str, "rater": str})
        ratings, raters = ratings_array(ann, images["image_id"])
        out.n_raters = len(raters)
        out.kappa = pd.Series(fleiss_kappa_per_code(ratings), name="Fleiss' kappa")
    else:
        out.notes.append(f"{ann_path} not found: no inter-rater agreement")
    labels_path = root / "labels.csv"
    if labels_path.is_file():
        labels = pd.read_csv(labels_path, dtype={"image_id": str})
        cols = [*CODES, "bcc"]
        out.prevalence = pd.DataFrame({"positives": labels[cols].sum().astype(int),
                                       "share": labels[cols].mean().round(3)})
    else:
        out.notes.append(f"{labels_path} not found: run `python -m bcc.consensus {root}`")
    q_path = root / "rater_quality.csv"
    if q_path.is_file():
        q = pd.read_csv(q_path, dtype={"rater": str})
        table = q.pivot(index="rater", columns="code", values=["sensitivity", "specificity"])
        out.rater_quality = table.reindex(columns=list(CODES), level=1)
    else:
        out.notes.append(f"{q_path} not found: run `python -m bcc.consensus {root}`")
    return out


def format_dataset(d: DatasetSummary) -> str:
    """Markdown for the report's dataset section."""
    if d.root is None or d.n_images is None:
        return "\n".join(f"- {n}" for n in d.notes) or "- no dataset information"
    lines = [(f"- Dataset: `{d.root}` — {d.n_images} images, {d.n_raters or '?'} raters"
             f"{', pattern masks present' if d.has_masks else ', no pattern masks'}"
             f"{', lesion masks present' if d.has_lesion_masks else ''}.")]
    if d.prevalence is not None or d.kappa is not None:
        t = pd.DataFrame(index=[*CODES, "bcc"])
        if d.prevalence is not None:
            t["consensus positives"] = d.prevalence["positives"]
            t["share"] = d.prevalence["share"].map("{:.3f}".format)
        if d.kappa is not None:
            t["Fleiss' κ (raw ratings)"] = d.kappa.reindex(t.index).map(lambda v: "–" if pd.isna(v) else f"{v:.3f}")
        lines += ["", markdown_table(t.fillna("–"))]
    if d.rater_quality is not None:
        rq = d.rater_quality.copy()
        rq.columns = [f"{m[:4]}. {c}" for m, c in rq.columns]
        lines += ["", ("Rater quality estimated by the Dawid–Skene consensus (`rater_quality.csv`; sens. = "
                  "sensitivity, spec. = specificity per code):"), "", markdown_table(rq)]
    lines += [f"- {n}" for n in d.notes]
    return "\n".join(lines)
