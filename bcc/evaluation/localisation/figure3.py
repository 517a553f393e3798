"""Fig. 3 panels of Table 4 and which maps to draw: the median one, then the best and the worst.

A figure of the best-aligned map says what the method can do, not what it usually does; the median
map (by Cohen's d of the energy, on the lesion background where there is one) is the typical case and
comes first. Each figure's title and file name say which rank it is.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bcc.evaluation.figures import save_figure
from bcc.evaluation.localisation.statistics import BINS, conditional_pdfs, pdf_intersection
from bcc.explanation.render import overlay

RANKS = ("median", "best", "worst")


def figure3(rgb: np.ndarray, mask: np.ndarray, z: np.ndarray, path: Path, title: str = "",
            lesion: np.ndarray | None = None, bins: np.ndarray = BINS) -> Path:
    """Fig. 3-style panels: (a) image + mask contour (and the lesion's, dashed), (b) heat map, (c) overlay
    + contour, (d) the PDFs of z in the mask (Fg), outside it (the paper's Bg) and, with a lesion mask, in
    the rest of the lesion."""
    fg = np.asarray(mask) > 0
    pdf_fg, pdf_bg = conditional_pdfs(z, fg, ~fg, bins)
    centres = (bins[:-1] + bins[1:]) / 2
    fig, ax = plt.subplots(1, 4, figsize=(16, 4))
    ax[0].imshow(rgb)
    ax[0].contour(fg, levels=[0.5], colors="red", linewidths=1.2)
    if lesion is not None:
        ax[0].contour(np.asarray(lesion) > 0, levels=[0.5], colors="yellow", linewidths=1.0, linestyles="dashed")
    ax[0].set_title("(a) image, expert mask" + (", lesion (dashed)" if lesion is not None else ""))
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
    if lesion is not None and (rest := (np.asarray(lesion) > 0) & ~fg).any():
        ax[3].plot(centres, conditional_pdfs(z, fg, rest, bins)[1], color="tab:green", linestyle="dashed",
                   label=f"P(z|lesion - Fg), mean {z[rest].mean():.2f}")
    ax[3].set_xlabel("z")
    ax[3].set_ylabel("density")
    ax[3].legend(fontsize=8)
    ax[3].set_title("(d) conditional PDFs")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, dpi=100)


def figure_choice(records: pd.DataFrame, max_figures: int) -> pd.DataFrame:
    """Up to `max_figures` Grad-CAM diagnosis maps (``RANKS`` order: median, best, worst Cohen's d) with
    ``rank`` and ``n_ranked`` (how many maps were ranked) columns. Ranked on the lesion background where the records have one, else the image's;
    pattern maps stand in when there is no diagnosis map. Ties and small sets give fewer distinct maps."""
    rec = records[records["map"] == "gradcam"]
    rec = rec[rec["output"] == "bcc"] if (rec["output"] == "bcc").any() else rec
    background = "lesion" if (rec["background"] == "lesion").any() else "image"
    rec = rec[(rec["background"] == background) & rec["cohens_d"].notna()].sort_values("cohens_d", kind="stable")
    if rec.empty or max_figures <= 0:
        return rec.assign(rank=pd.Series(dtype=str), n_ranked=0).head(0)
    at = {"median": (len(rec) - 1) // 2, "best": len(rec) - 1, "worst": 0}
    chosen, seen = [], set()
    for rank in RANKS[:max_figures]:
        if at[rank] not in seen:
            seen.add(at[rank])
            chosen.append(rec.iloc[[at[rank]]].assign(rank=rank, n_ranked=len(rec)))
    return pd.concat(chosen)
