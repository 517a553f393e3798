"""Table 3 of the paper: binary, per-pattern and clinically-inspired metrics, mean and variance over folds.

Every metric is computed per test fold, then summarised as the mean and the sample variance (ddof=1)
over the folds, as the paper's Table 3 ("averaged over all folds", σ² per cell). A prediction is
positive when its probability is ≥ that output's threshold (0.5 by default).

Rows (section → row):

* ``BCC/Non-BCC`` → ``BCC/Non-BCC``: the diagnosis head (``p_bcc``) against ``y_bcc``.
  ``BCC/Non-BCC (clinical rule)``: beyond the paper, the verdict of the clinical rule
  (``bcc.core.patterns.clinical_rule``) applied to the predicted patterns, against ``y_bcc``.
* ``Pattern detection`` → one row per code (PN, U, ON, MG, ML, SW, AT): that head against its
  consensus label.
* ``Clinically-inspired XAI``:

  - ``No-pattern (all zeros)``: the class "no code at all" — reference positive when all seven
    reference codes are 0, predicted positive when all seven predicted codes are 0. Its recall is the
    paper's number (share of all-zero lesions predicted all-zero, 0.73 in the paper); specificity,
    precision and accuracy of the same 2×2 table are given as well.
  - ``Pigment Network``: the negative criterion, scored as the paper does with the PN head against
    the PN label (the same numbers as the PN pattern row; the paper repeats them here).
  - ``BCC pattern detection``: the clinician's question "is at least one BCC pattern shown?".
    *accuracy* column = **detection rate** (the paper's 0.99): among lesions with ``y_bcc = 1`` and
    at least one annotated BCC pattern (U, ON, MG, ML, SW, AT), the share where the model predicts at
    least one *of the annotated* patterns. *recall / specificity / precision*: the lesion-level binary
    task "any BCC pattern" over all lesions of the fold — reference positive when ≥1 of the six BCC
    codes is annotated, predicted positive when ≥1 of the six is predicted (recall = TP/(TP+FN),
    specificity = TN/(TN+FP), precision = TP/(TP+FP)). The paper does not spell these three out; this
    is our precise reading, stated in the report.

A metric whose denominator is 0 in a fold (e.g. no SW lesion in it) is NaN for that fold; the summary
then says over how many folds it was defined (``folds`` column), never hiding it. An output the model
was not trained on (``p_<output>`` blank in the predictions) is a row marked ``not trained``, and the
clinical rule runs over the trained codes only (``clinical_rule(known=...)``); with no BCC pattern
trained it is ``not trained`` too. So do *No-pattern* and *BCC pattern detection*: "all codes 0" and "a BCC
pattern shown" are judged over the trained codes (on the public sets: PN and AT, the only ones labelled),
never over codes nobody rated. Every cell is scikit-learn's (``bcc.core.classification``).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from bcc.core.classification import binary_metrics, roc_auc
from bcc.core.patterns import BCC_CODES, CODES, OUTPUTS, PAPER_NAMES, clinical_rule, rule_defined

METRICS = ("recall", "specificity", "precision", "accuracy")
RANKING = "auroc"  # of the probability behind a row (the diagnosis head, each pattern head); none for a verdict
BINARY, PATTERNS, CLINICAL = "BCC/Non-BCC", "Pattern detection", "Clinically-inspired XAI"
ROW_BCC, ROW_RULE = "BCC/Non-BCC", "BCC/Non-BCC (clinical rule)"
ROW_NO_PATTERN, ROW_PN, ROW_DETECTION = "No-pattern (all zeros)", "Pigment Network", "BCC pattern detection"


def thresholds_for(value: float | Mapping[str, float]) -> dict[str, float]:
    """One threshold per output of OUTPUTS, from a number or a mapping (missing outputs → 0.5)."""
    if isinstance(value, Mapping):
        return {o: float(value.get(o, 0.5)) for o in OUTPUTS}
    return {o: float(value) for o in OUTPUTS}


def hard_predictions(df: pd.DataFrame, thresholds: Mapping[str, float]) -> pd.DataFrame:
    """0/1 predictions ``yhat_<output>`` from ``p_<output>`` and the per-output thresholds."""
    return pd.DataFrame({f"yhat_{o}": (df[f"p_{o}"].to_numpy() >= thresholds[o]).astype(int) for o in OUTPUTS},
                        index=df.index)


def _observed(df: pd.DataFrame, cols: list[str]) -> np.ndarray:
    return df[cols].notna().all(axis=1).to_numpy()


NOT_TRAINED = "not trained"


def trained_codes(df: pd.DataFrame) -> np.ndarray:
    """(7,) bool: the codes the model predicted (a blank ``p_<code>`` column: its head was not trained)."""
    return df[[f"p_{c}" for c in CODES]].notna().all(axis=0).to_numpy()


def fold_rows(df: pd.DataFrame, thresholds: Mapping[str, float]) -> list[dict]:
    """Table 3's rows for one fold's predictions (columns y_<output>, p_<output>)."""
    hat = hard_predictions(df, thresholds)
    known = trained_codes(df)
    rows: list[dict] = []

    def add(section: str, row: str, mask: np.ndarray, y, p, trained: bool = True, score=None, **extra) -> None:
        if not trained:
            mask = np.zeros(len(df), bool)
            extra["note"] = NOT_TRAINED
        if score is not None:
            extra[RANKING] = roc_auc(np.asarray(y)[mask], np.asarray(score, float)[mask]) if mask.any() else float("nan")
        rows.append({"section": section, "row": row, **binary_metrics(np.asarray(y)[mask], np.asarray(p)[mask]),
                     **extra})

    ok = _observed(df, ["y_bcc"])
    add(BINARY, ROW_BCC, ok, df["y_bcc"].fillna(0), hat["yhat_bcc"], trained=bool(df["p_bcc"].notna().all()),
        score=df["p_bcc"])
    rule = clinical_rule(hat[[f"yhat_{c}" for c in CODES]].to_numpy(), known)
    add(BINARY, ROW_RULE, ok, df["y_bcc"].fillna(0), rule, trained=rule_defined(known))
    for c, trained in zip(CODES, known, strict=True):
        add(PATTERNS, PAPER_NAMES[c], _observed(df, [f"y_{c}"]), df[f"y_{c}"].fillna(0), hat[f"yhat_{c}"],
            trained=bool(trained), score=df[f"p_{c}"])

    codes = [c for c, k in zip(CODES, known, strict=True) if k]  # an untrained code is neither 0 nor 1
    all_codes = _observed(df, [f"y_{c}" for c in codes])
    ref = df[[f"y_{c}" for c in codes]].fillna(0).to_numpy().astype(int)
    pred = hat[[f"yhat_{c}" for c in codes]].to_numpy()
    add(CLINICAL, ROW_NO_PATTERN, all_codes, ref.sum(axis=1) == 0, pred.sum(axis=1) == 0, trained=bool(codes))
    add(CLINICAL, ROW_PN, _observed(df, ["y_PN"]), df["y_PN"].fillna(0), hat["yhat_PN"], trained=bool(known[0]))
    bcc_codes = [c for c in BCC_CODES if c in codes]
    if bcc_codes:
        rows.append({"section": CLINICAL, "row": ROW_DETECTION, **bcc_pattern_detection(df, hat, bcc_codes)})
    else:
        add(CLINICAL, ROW_DETECTION, np.zeros(len(df), bool), df["y_bcc"].fillna(0), hat["yhat_bcc"], trained=False)
    return rows


def bcc_pattern_detection(df: pd.DataFrame, hat: pd.DataFrame, codes: Sequence[str] = BCC_CODES) -> dict[str, float]:
    """The ``BCC pattern detection`` row over the BCC `codes` the model was trained on (definitions in the
    module docstring)."""
    cols = [f"y_{c}" for c in codes]
    ok = _observed(df, cols)
    ref = df[cols].fillna(0).to_numpy().astype(bool)[ok]
    pred = hat[[f"yhat_{c}" for c in codes]].to_numpy().astype(bool)[ok]
    out = binary_metrics(ref.any(axis=1), pred.any(axis=1))
    bcc = (df["y_bcc"].fillna(0).to_numpy() == 1)[ok]
    population = bcc & ref.any(axis=1)
    hits = (ref & pred).any(axis=1)[population]
    out["accuracy"] = float(hits.mean()) if population.any() else float("nan")  # recall over `population`
    out["n"] = int(population.sum())  # the detection rate's population
    return out


def per_fold_table(predictions: pd.DataFrame, thresholds=0.5) -> pd.DataFrame:
    """Table 3's rows for every fold in `predictions` (a ``fold`` column).

    `thresholds`: one number, a mapping output → threshold, or per fold ``{fold: number or mapping}``
    (``eval.thresholds=val`` picks them per fold on that fold's validation split).
    """
    out = []
    for fold, df in predictions.groupby("fold", sort=True):
        for r in fold_rows(df.reset_index(drop=True), thresholds_for(fold_thresholds(thresholds, int(fold)))):
            out.append({"fold": int(fold), **r})
    return pd.DataFrame(out)


def fold_thresholds(thresholds, fold: int):
    if isinstance(thresholds, Mapping) and thresholds and all(isinstance(k, (int, np.integer)) for k in thresholds):
        if fold not in thresholds:
            raise KeyError(f"no thresholds for fold {fold}")
        return thresholds[fold]
    return thresholds


def aggregate(per_fold: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample variance (ddof=1) over folds per row; ``folds`` = folds where all four are defined."""
    rows = []
    for (section, row), g in per_fold.groupby(["section", "row"], sort=False):
        r = {"section": section, "row": row, "n": int(g["n"].sum()), "folds": int(g[list(METRICS)].notna()
                                                                                   .all(axis=1).sum())}
        if "note" in g and g["note"].notna().all():
            r["note"] = g["note"].iloc[0]
        for m in (*METRICS, RANKING):
            if m not in g:
                continue
            v = g[m].dropna().to_numpy()
            r[f"{m}_mean"] = float(v.mean()) if len(v) else float("nan")
            r[f"{m}_var"] = float(v.var(ddof=1)) if len(v) > 1 else float("nan")
            r[f"{m}_folds"] = len(v)
        rows.append(r)
    return pd.DataFrame(rows)


def table3(predictions: pd.DataFrame, thresholds=0.5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary over folds, per-fold rows) for one backbone's predictions at one stage."""
    per_fold = per_fold_table(predictions, thresholds)
    return aggregate(per_fold), per_fold


def format_table3(summary: pd.DataFrame, k: int | None = None) -> str:
    """Markdown in the paper's layout: ``mean (σ²)`` per cell, the three sections as header rows.

    A cell defined in fewer than `k` folds (no positives in some test folds) says so: ``[2/5 folds]``.
    """
    shown = (*METRICS, RANKING) if f"{RANKING}_mean" in summary else METRICS
    lines = ["| | n | Recall (σ²) | Specificity (σ²) | Precision (σ²) | Accuracy (σ²) |"
             + (" AUROC (σ²) |" if RANKING in shown else ""),
             "| --- | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" if RANKING in shown else "")]
    for section, g in summary.groupby("section", sort=False):
        lines.append(f"| **{section}** | | | | | |" + (" |" if RANKING in shown else ""))
        for _, r in g.iterrows():
            if isinstance(r.get("note"), str):
                lines.append(f"| {r['row']} | – | " + " | ".join([f"*{r['note']}*"] * len(shown)) + " |")
                continue
            cells = []
            for m in shown:
                mean, var = r.get(f"{m}_mean", np.nan), r.get(f"{m}_var", np.nan)
                mean, var = (float("nan") if pd.isna(v) else float(v) for v in (mean, var))
                digits = 3 if m == RANKING else 2
                text = "–" if np.isnan(mean) else f"{mean:.{digits}f}" + ("" if np.isnan(var) else f" ({var:.2e})")
                nf = r.get(f"{m}_folds")
                if k and nf is not None and 0 < nf < k:
                    text += f" [{int(nf)}/{k} folds]"
                cells.append(text)
            lines.append(f"| {r['row']} | {r['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
