"""Agreement of Grad-CAM maps with expert masks: the paper's Table 4 and Fig. 3 (§3.2.2).

For a normalised map z in [0, 1] and a mask splitting the image into foreground Fg (mask > 0) and
background Bg, per image (``image_stats``):

- the conditional PDFs P(z | Fg), P(z | Bg) as density histograms on fixed bins (``BINS``: 50 equal bins
  on [0, 1]), and the area of their intersection, ∫ min(P(z|Fg), P(z|Bg)) dz, in [0, 1];
- mean and standard deviation of z in Fg and in Bg;
- a two-sample z-test of the energy z² in Fg against Bg (unpooled variances, two-sided), and Cohen's d
  of the energies (pooled standard deviation), positive when Fg is hotter. Pixels are far from
  independent, so p-values are tiny for any visible contrast — as in the paper, the share of significant
  images and d are what to read.

``table4`` summarises these per group of maps; ``mask_report`` runs the whole analysis for trained runs.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from scipy.stats import norm
from statsmodels.stats.multitest import multipletests

from bcc.core.io import atomic_path, write_csv
from bcc.core.layout import BEST, PREDICTIONS
from bcc.core.patterns import BCC_CODES, CODES, OUTPUTS
from bcc.core.predictions import read_predictions
from bcc.data.contract import load_dataset
from bcc.data.images import read_mask, read_rgb, to_input
from bcc.explanation.gradcam import gradcam_maps, postprocess, raw_cams
from bcc.explanation.render import overlay
from bcc.models.checkpoint import load_network

BINS = np.linspace(0.0, 1.0, 51)
ALPHA = 0.05
GROUPS = ("correct", "incorrect", "all")
KINDS = ("diagnosis", "patterns")
ROWS = ("n_maps", "intersection", "mean_fg", "mean_bg", "std_fg", "std_bg", "intersection_image_mean",
        "share_sig_uncorrected", "share_sig_bonferroni", "share_sig_bh", "n_sig_uncorrected",
        "n_sig_bonferroni", "n_sig_bh", "cohens_d_mean", "cohens_d_median")


# ---- per image ---------------------------------------------------------------------------------------
def conditional_pdfs(z: np.ndarray, mask: np.ndarray, bins: np.ndarray = BINS) -> tuple[np.ndarray, np.ndarray]:
    """Density histograms of z inside and outside the mask on `bins` (each integrates to 1)."""
    fg = np.asarray(mask) > 0
    z = np.clip(np.asarray(z, dtype=np.float64), bins[0], bins[-1])
    pdf_fg = np.histogram(z[fg], bins=bins, density=True)[0]
    pdf_bg = np.histogram(z[~fg], bins=bins, density=True)[0]
    return pdf_fg, pdf_bg


def pdf_intersection(pdf_a: np.ndarray, pdf_b: np.ndarray, bins: np.ndarray = BINS) -> float:
    """Area under min(pdf_a, pdf_b): 1 for identical distributions, 0 for disjoint ones."""
    return float(np.sum(np.minimum(pdf_a, pdf_b) * np.diff(bins)))


def energy_ztest(fg: np.ndarray, bg: np.ndarray) -> tuple[float, float]:
    """Two-sided two-sample z-test of mean z² in Fg vs Bg (unpooled variances): (statistic, p-value)."""
    e1, e2 = np.square(fg, dtype=np.float64), np.square(bg, dtype=np.float64)
    diff = e1.mean() - e2.mean()
    se = np.sqrt(e1.var(ddof=1) / e1.size + e2.var(ddof=1) / e2.size)
    if se == 0:
        return (0.0, 1.0) if diff == 0 else (float(np.sign(diff) * np.inf), 0.0)
    stat = diff / se
    return float(stat), float(2 * norm.sf(abs(stat)))


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """(mean a - mean b) / pooled standard deviation (ddof 1); 0 for two equal constants, NaN if undefined."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = a.mean() - b.mean()
    pooled = ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2)
    if pooled == 0:
        return 0.0 if diff == 0 else float("nan")
    return float(diff / np.sqrt(pooled))


def image_stats(z: np.ndarray, mask: np.ndarray, bins: np.ndarray = BINS) -> dict | None:
    """Table-4 statistics of one map against one mask (same shape); None if Fg or Bg has < 2 pixels."""
    z, fg = np.asarray(z, dtype=np.float64), np.asarray(mask) > 0
    if z.shape != fg.shape:
        raise ValueError(f"map shape {z.shape} differs from mask shape {fg.shape}")
    zf, zb = z[fg], z[~fg]
    if zf.size < 2 or zb.size < 2:
        return None
    pdf_fg, pdf_bg = conditional_pdfs(z, fg, bins)
    stat, p = energy_ztest(zf, zb)
    return {"n_fg": int(zf.size), "n_bg": int(zb.size), "mean_fg": float(zf.mean()), "mean_bg": float(zb.mean()),
            "std_fg": float(zf.std()), "std_bg": float(zb.std()),
            "intersection": pdf_intersection(pdf_fg, pdf_bg, bins), "z_stat": stat, "p_value": p,
            "cohens_d": cohens_d(zf ** 2, zb ** 2), "pdf_fg": pdf_fg, "pdf_bg": pdf_bg}


# ---- over images -------------------------------------------------------------------------------------
def _pdf_moments(pdf: np.ndarray, bins: np.ndarray) -> tuple[float, float]:
    centres, width = (bins[:-1] + bins[1:]) / 2, np.diff(bins)
    mass = pdf * width
    mean = float(np.sum(mass * centres))
    return mean, float(np.sqrt(max(np.sum(mass * (centres - mean) ** 2), 0.0)))


def _mixture_moments(means: np.ndarray, stds: np.ndarray) -> tuple[float, float]:
    """Mean and std of the equal-weight mixture of per-image distributions (exact, not binned)."""
    mean = float(np.mean(means))
    return mean, float(np.sqrt(max(np.mean(stds ** 2 + means ** 2) - mean ** 2, 0.0)))


def _column(rec: pd.DataFrame, bins: np.ndarray) -> dict[str, float]:
    n = len(rec)
    if n == 0:
        return {"n_maps": 0} | {r: np.nan for r in ROWS[1:]}
    pdf_fg, pdf_bg = np.mean(np.stack(rec["pdf_fg"].to_list()), 0), np.mean(np.stack(rec["pdf_bg"].to_list()), 0)
    mean_fg, std_fg = _mixture_moments(rec["mean_fg"].to_numpy(), rec["std_fg"].to_numpy())
    mean_bg, std_bg = _mixture_moments(rec["mean_bg"].to_numpy(), rec["std_bg"].to_numpy())
    sig = {m: int(rec[f"sig_{m}"].sum()) for m in ("uncorrected", "bonferroni", "bh")}
    return {"n_maps": n, "intersection": pdf_intersection(pdf_fg, pdf_bg, bins), "mean_fg": mean_fg,
            "mean_bg": mean_bg, "std_fg": std_fg, "std_bg": std_bg,
            "intersection_image_mean": float(rec["intersection"].mean()),
            **{f"share_sig_{m}": sig[m] / n for m in sig}, **{f"n_sig_{m}": sig[m] for m in sig},
            "cohens_d_mean": float(np.nanmean(rec["cohens_d"])) if rec["cohens_d"].notna().any() else np.nan,
            "cohens_d_median": float(np.nanmedian(rec["cohens_d"])) if rec["cohens_d"].notna().any() else np.nan}


def significance(p_values: Sequence[float], alpha: float = ALPHA) -> pd.DataFrame:
    """Columns sig_uncorrected, sig_bonferroni, sig_bh (bool) for one family of tests."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return pd.DataFrame({c: np.zeros(0, bool) for c in ("sig_uncorrected", "sig_bonferroni", "sig_bh")})
    return pd.DataFrame({"sig_uncorrected": p < alpha,
                         "sig_bonferroni": multipletests(p, alpha=alpha, method="bonferroni")[0],
                         "sig_bh": multipletests(p, alpha=alpha, method="fdr_bh")[0]})


def table4(records: pd.DataFrame, bins: np.ndarray = BINS, alpha: float = ALPHA) -> pd.DataFrame:
    """The Table-4 summary of per-map records (rows as ``image_stats`` plus ``output`` and ``correct``).

    Layout: index = statistics (``ROWS``), columns ``"<kind>/<group>"`` with kind ``diagnosis`` (the
    ``bcc`` output's maps) or ``patterns`` (the 7 code outputs' maps, pooled) and group ``correct``,
    ``incorrect`` or ``all`` (``all`` also holds maps whose label is missing). Rows:

    - ``n_maps``; ``intersection``, ``mean_fg``/``mean_bg``, ``std_fg``/``std_bg``: of the group's
      conditional PDFs P(z|Fg), P(z|Bg), each the equal-weight average of the per-image PDFs (so every
      image counts once, whatever its mask size; the std includes between-image spread);
    - ``intersection_image_mean``: the mean of the per-image PDF intersections;
    - ``share_sig_*`` / ``n_sig_*``: images whose energy z-test is significant at `alpha`, uncorrected,
      Bonferroni and Benjamini–Hochberg; the corrections treat all maps of one kind (correct and
      incorrect together) as one family of tests, then the counts are split by group;
    - ``cohens_d_mean`` / ``cohens_d_median``: of the per-image Cohen's d of z² (Fg minus Bg).
    """
    cols = {}
    for kind in KINDS:
        rec = records[(records["output"] == "bcc") == (kind == "diagnosis")].reset_index(drop=True)
        rec = pd.concat([rec, significance(rec["p_value"], alpha)], axis=1)
        for group in GROUPS:
            sub = rec if group == "all" else rec[rec["correct"].eq(group == "correct") & rec["correct"].notna()]
            cols[f"{kind}/{group}"] = _column(sub, bins)
    return pd.DataFrame(cols).reindex(list(ROWS))


def effect_size_label(d: float) -> str:
    """Cohen's d in words (Cohen 1988, extended by Sawilowsky 2009)."""
    if not np.isfinite(d):
        return "undefined"
    for bound, label in ((0.2, "negligible"), (0.5, "small"), (0.8, "medium"), (1.2, "large"), (2.0, "very large")):
        if abs(d) < bound:
            return label
    return "huge"


# ---- figures (Fig. 3) ----------------------------------------------------------------------------------
def figure3(rgb: np.ndarray, mask: np.ndarray, z: np.ndarray, path: Path, title: str = "",
            bins: np.ndarray = BINS) -> Path:
    """Fig. 3-style panels: (a) image + mask contour, (b) heat map, (c) overlay + contour, (d) the PDFs."""
    fg = np.asarray(mask) > 0
    pdf_fg, pdf_bg = conditional_pdfs(z, fg, bins)
    centres = (bins[:-1] + bins[1:]) / 2
    fig, ax = plt.subplots(1, 4, figsize=(16, 4))
    ax[0].imshow(rgb)
    ax[0].contour(fg, levels=[0.5], colors="red", linewidths=1.2)
    ax[0].set_title("(a) image, expert mask")
    im = ax[1].imshow(z, cmap="jet", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax[1], fraction=0.046, pad=0.04)
    ax[1].set_title("(b) Grad-CAM")
    ax[2].imshow(overlay(rgb, z))
    ax[2].contour(fg, levels=[0.5], colors="white", linewidths=1.2)
    ax[2].set_title("(c) overlay")
    for a in ax[:3]:
        a.axis("off")
    ax[3].plot(centres, pdf_fg, color="tab:blue", label=f"P(z|Fg), mean {z[fg].mean():.2f}")
    ax[3].plot(centres, pdf_bg, color="tab:orange", label=f"P(z|Bg), mean {z[~fg].mean():.2f}")
    ax[3].fill_between(centres, np.minimum(pdf_fg, pdf_bg), color="grey", alpha=0.3,
                       label=f"intersection {pdf_intersection(pdf_fg, pdf_bg, bins):.2f}")
    ax[3].set_xlabel("z")
    ax[3].set_ylabel("density")
    ax[3].legend(fontsize=8)
    ax[3].set_title("(d) conditional PDFs")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


# ---- trained runs --------------------------------------------------------------------------------------
def map_masks(masks: dict[str, Path]) -> dict[str, np.ndarray]:
    """Which mask each output's map is compared with: output name → boolean mask.

    ``bcc`` (the diagnosis map) → the union of the BCC-pattern masks (U..AT), as the paper combines the
    pattern segmentations into one image; where a dataset has only the union ``<id>.png`` it is used.
    The diagnosis map explains the BCC logit, so PN (evidence against BCC) is left out of its mask;
    images whose only pattern is PN get no diagnosis record. Each code's map → that code's own mask.
    """
    out = {c: read_mask(masks[c]) for c in CODES if c in masks}
    bcc = [out[c] for c in BCC_CODES if c in out]
    if bcc:
        out["bcc"] = np.logical_or.reduce(bcc)
    elif "all" in masks and not any(c in masks for c in CODES):
        out["bcc"] = read_mask(masks["all"])
    return {o: out[o] for o in OUTPUTS if o in out and out[o].any()}


def _correct(row: pd.Series, output: str, threshold: float = 0.5):
    y = row.get(f"y_{output}")
    if y is None or pd.isna(y):
        return pd.NA
    return bool((row[f"p_{output}"] >= threshold) == bool(int(y)))


def run_records(run_dir: Path, dataset, batch_size: int = 16) -> pd.DataFrame:
    """Per-map records (``image_stats`` + image_id, fold, output, correct, run_dir) of one run's test fold."""
    run_dir = Path(run_dir)
    preds = read_predictions(run_dir / PREDICTIONS)
    preds = preds[preds["image_id"].isin(dataset.masks)].reset_index(drop=True)
    if preds.empty:
        return pd.DataFrame()
    net = load_network(run_dir / BEST)
    rows = []
    for start in range(0, len(preds), batch_size):
        chunk = preds.iloc[start:start + batch_size]
        rgbs = [read_rgb(dataset.image_path(str(i)))[0] for i in chunk["image_id"]]
        cams, _ = raw_cams(net, torch.stack([to_input(rgb, net.image_size) for rgb in rgbs]))
        for i, ((_, row), rgb) in enumerate(zip(chunk.iterrows(), rgbs)):
            masks = map_masks(dataset.masks[str(row["image_id"])])
            if not masks:
                continue
            maps = postprocess(cams[i:i + 1], rgb.shape[:2])[0].numpy()
            for output, mask in masks.items():
                if mask.shape != rgb.shape[:2]:
                    raise ValueError(f"{row['image_id']}: mask {mask.shape} vs image {rgb.shape[:2]}")
                stats = image_stats(maps[OUTPUTS.index(output)], mask)
                if stats is not None:
                    rows.append({"image_id": str(row["image_id"]), "fold": row.get("fold"), "output": output,
                                 "correct": _correct(row, output), "run_dir": str(run_dir), **stats})
    return pd.DataFrame(rows)


def _figure_choice(records: pd.DataFrame, max_figures: int) -> pd.DataFrame:
    """Diagnosis maps to draw: the correct ones with the largest d first, then incorrect ones (lowest d)."""
    rec = records[records["output"] == "bcc"]
    if rec.empty:
        rec = records
    good = rec[rec["correct"].eq(True)].sort_values("cohens_d", ascending=False)
    bad = rec[rec["correct"].eq(False)].sort_values("cohens_d")
    n_bad = min(len(bad), max_figures // 2)
    return pd.concat([good.head(max_figures - n_bad), bad.head(n_bad)]).head(max_figures)


def _draw(records: pd.DataFrame, dataset, out_dir: Path) -> list[Path]:
    paths = []
    for run_dir, rec in records.groupby("run_dir", sort=False):
        net = load_network(Path(run_dir) / BEST)
        for _, r in rec.iterrows():
            rgb = read_rgb(dataset.image_path(r["image_id"]))[0]
            maps, _ = gradcam_maps(net, to_input(rgb, net.image_size)[None], size=rgb.shape[:2])
            mask = map_masks(dataset.masks[r["image_id"]])[r["output"]]
            verdict = {True: "correct", False: "incorrect"}.get(r["correct"], "unlabelled")
            title = (f"{r['image_id']} (fold {r['fold']}): {r['output']} map, {verdict} prediction; "
                     f"Cohen's d = {r['cohens_d']:.2f}, p = {r['p_value']:.1e}")
            paths.append(figure3(rgb, mask, maps[0, OUTPUTS.index(r["output"])].numpy(),
                                 Path(out_dir) / f"fig3_{r['image_id']}_{r['output']}.png", title))
    return paths


def mask_report(run_dirs: list[Path], dataset_root: Path, out_dir: Path, max_figures: int = 4
                ) -> tuple[pd.DataFrame, list[Path]]:
    """Table 4 and Fig. 3 panels for stage-3 runs (one per fold: ``best.ckpt`` + test-fold ``predictions.csv``).

    Maps are computed for the test-fold images that have masks, at the image's own resolution (the
    masks'). Compared: the diagnosis (``bcc``) map with the union of the BCC-pattern masks and each
    code's map with that code's own mask (``map_masks``). A map counts as *correct* when its own
    output is: the ``bcc`` map when ``p_bcc >= 0.5`` agrees with ``y_bcc``, a code's map when
    ``p_<code> >= 0.5`` agrees with ``y_<code>`` (the consensus label); missing labels only enter ``all``.

    Returns ``(table, figure_paths)``: ``table`` is ``table4(records)`` — index = statistics (``ROWS``),
    columns ``diagnosis/correct``, ``diagnosis/incorrect``, ``diagnosis/all``, ``patterns/correct``,
    ``patterns/incorrect``, ``patterns/all`` (see ``table4`` for each row's definition); it is empty
    (no columns) when no test image has a mask. Writes into `out_dir`: ``table4.csv``,
    ``gradcam_per_image.csv`` (one row per map: image_id, fold, output, correct, n_fg, n_bg, mean/std
    of z in Fg and Bg, intersection, z_stat, p_value, cohens_d) and up to `max_figures`
    ``figures/fig3_<image_id>_<output>.png`` of diagnosis maps (best-aligned correct ones first, then the
    worst incorrect ones).
    """
    dataset = load_dataset(Path(dataset_root))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not dataset.masks:
        return pd.DataFrame(), []
    frames = [run_records(Path(d), dataset) for d in run_dirs]
    records = pd.concat([f for f in frames if not f.empty], ignore_index=True) if any(
        not f.empty for f in frames) else pd.DataFrame()
    if records.empty:
        return pd.DataFrame(), []
    table = table4(records)
    write_csv(table.rename_axis("statistic").reset_index(), out_dir / "table4.csv")
    write_csv(records.drop(columns=["pdf_fg", "pdf_bg", "run_dir"]), out_dir / "gradcam_per_image.csv")
    figures = (_draw(_figure_choice(records, max_figures), dataset, out_dir / "figures")
               if max_figures > 0 else [])
    return table, figures
