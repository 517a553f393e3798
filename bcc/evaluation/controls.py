"""Table 5 on real pictures: what ImageNet brings, apart from what the architecture and the input size bring.

Each row is a run on the same folds (``make real-controls``: ``bcc.real --controls``), read back from its
report folder: its size and CPU cost (``table5.csv``), the AUROC of p(BCC) within each source and over all
(``sources_bcc.csv``), the labelled heads (``sources_heads.csv``: PN and AT on Derm7pt), and where its
Grad-CAM looks on PH2's lesions (``lesion_focus.csv``). The main run's report also gives the *linear probe*
row: a logistic regression on its stage-1 (ImageNet, frozen) features (``sources_linear_probe.csv``), and
the colour-statistics baseline (``sources_shortcuts.csv``) that a model must beat.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from bcc.core.io import write_csv, write_text
from bcc.evaluation.markdown import markdown_table

SOURCES = ("all sources", "ham10000", "derm7pt")


def _read(report: Path, name: str) -> pd.DataFrame | None:
    path = report / f"{name}.csv"
    return pd.read_csv(path) if path.is_file() else None


def _auroc(table: pd.DataFrame | None, output: str, source: str) -> str:
    if table is None:
        return "–"
    row = table[(table["output"] == output) & (table["source"] == source)]
    if row.empty or pd.isna(row["auroc_mean"].iloc[0]):
        return "–"
    mean, sd = float(row["auroc_mean"].iloc[0]), row["auroc_sd"].iloc[0]
    return f"{mean:.3f}" + ("" if pd.isna(sd) else f" ± {float(sd):.3f}")


def _row(name: str, report: Path, bcc: pd.DataFrame | None, heads: pd.DataFrame | None) -> dict:
    t5, focus = _read(report, "table5"), _read(report, "lesion_focus")
    row: dict = {"run": name}
    if t5 is not None and not t5.empty:
        r = t5.iloc[0]
        row.update(backbone=r["timm_name"], input_px=int(r["input_px"]), params_M=round(float(r["params_M"]), 2),
                   GMACs=round(float(r["GMACs"]), 3), cpu_ms_per_image=round(float(r["cpu_ms_per_image"]), 2))
    for source in SOURCES:
        row[f"bcc_auroc {source}"] = _auroc(bcc, "bcc", source)
    row["PN_auroc derm7pt"] = _auroc(heads, "PN", "derm7pt")
    row["AT_auroc derm7pt"] = _auroc(heads, "AT", "derm7pt")
    if focus is not None and (f := focus[focus["output"] == "bcc"]).shape[0]:
        row["gradcam_lesion_share"] = round(float(f["share_gradcam"].iloc[0]), 3)
        row["peaks_off_lesion"] = f"{int(f['peaks_off_lesion'].iloc[0])}/{int(f['pictures'].iloc[0])}"
    return row


def comparison(main: tuple[str, Path], controls: Mapping[str, Path]) -> pd.DataFrame:
    """One row per run (report folders): the controls, the main run's linear probe, the main run, then the
    colour-statistics baseline on the main run's folds."""
    main_name, main_report = main
    rows = [_row(name, report, _read(report, "sources_bcc"), _read(report, "sources_heads"))
            for name, report in controls.items() if report.is_dir()]
    probe = _read(main_report, "sources_linear_probe")
    if probe is not None:
        rows.append({**_row(f"{main_name}: linear probe on its stage-1 features", main_report, probe, probe),
                     "gradcam_lesion_share": None, "peaks_off_lesion": None})
    rows.append(_row(main_name, main_report, _read(main_report, "sources_bcc"), _read(main_report, "sources_heads")))
    shortcuts = _read(main_report, "sources_shortcuts")
    if shortcuts is not None:
        colour = shortcuts[shortcuts["baseline"] == "colour statistics"]
        rows.append({"run": "baseline: colour statistics (logistic regression)",
                     **{f"bcc_auroc {s}": _auroc(colour, "bcc", s) for s in SOURCES}})
    table = pd.DataFrame(rows)
    if "input_px" in table:  # a whole number of pixels, also in a column the baseline leaves blank
        table["input_px"] = table["input_px"].astype("Int64")
    return table


def write_comparison(table: pd.DataFrame, out: Path) -> Path:
    """``comparison.csv`` and ``comparison.md`` in `out`."""
    write_csv(table, out / "comparison.csv")
    md = ["# Controls: the same folds, from scratch, as a linear probe and fine-tuned", "",
          ("AUROC mean ± sd over the test folds (`bcc_auroc <source>`: within that source); PN and AT on Derm7pt, "
           "the set that labels them; CPU ms/image at the run's input size on this machine (`table5.csv` of each "
           "run); Grad-CAM mass on PH2's lesions and maps peaking off them (`lesion_focus.csv`). The linear probe "
           "is a logistic regression on the main run's frozen stage-1 features, fitted on the training folds."), "",
          markdown_table(table, index=False), ""]
    return write_text("\n".join(md), out / "comparison.md")
