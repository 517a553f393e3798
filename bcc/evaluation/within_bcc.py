"""Do the pattern heads know which patterns a BCC shows, beyond "this is a BCC"?

Among the BCC lesions of each test fold (``y_bcc = 1``), the AUROC of each BCC-pattern head against its
code (``y_<CODE>``), and — the baseline it must beat — the AUROC of p(BCC) used as that code's score. A
pattern head that is only a second BCC detector scores about the baseline; one that sees its pattern
scores above it. PN is left out: the clinical rule makes it absent from BCC lesions. Mean and sd over the
folds where the code has both classes among the BCC lesions.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from bcc.core.classification import roc_auc
from bcc.core.patterns import BCC_CODES


def within_bcc_auroc(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per BCC code: head AUROC and p(BCC)-baseline AUROC among BCC lesions, mean/sd over folds, and the gap."""
    rows = []
    for code in BCC_CODES:
        head, base, n = [], [], 0
        for _, d in predictions.groupby("fold"):
            d = d[(d["y_bcc"] == 1) & d[f"y_{code}"].notna()]
            y = d[f"y_{code}"].to_numpy(int)
            if y.min(initial=1) == y.max(initial=0):
                continue  # one class only in this fold's BCC lesions
            head.append(roc_auc(y, d[f"p_{code}"]))
            base.append(roc_auc(y, d["p_bcc"]))
            n += len(d)
        h, b = np.array(head), np.array(base)
        rows.append({"code": code, "auroc_head": h.mean() if len(h) else np.nan,
                     "auroc_head_sd": h.std(ddof=1) if len(h) > 1 else np.nan,
                     "auroc_p_bcc": b.mean() if len(b) else np.nan,
                     "auroc_p_bcc_sd": b.std(ddof=1) if len(b) > 1 else np.nan,
                     "gap": (h - b).mean() if len(h) else np.nan, "folds": len(h), "n": n})
    table = pd.DataFrame(rows)
    mean = {"code": "mean", "auroc_head": table["auroc_head"].mean(), "auroc_p_bcc": table["auroc_p_bcc"].mean(),
            "gap": table["gap"].mean(), "folds": int(table["folds"].min()), "n": int(table["n"].sum())}
    return pd.concat([table, pd.DataFrame([mean])], ignore_index=True)
