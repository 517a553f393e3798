"""A DataFrame as a GitHub markdown table (no tabulate dependency). Text cells are HTML-escaped (markdown
renders raw HTML: a rater named ``<img src=x onerror=…>`` would run), with control and bidirectional characters
shown escaped (``core.io.printable``) and ``|`` escaped."""
from __future__ import annotations

import html
import math

import pandas as pd

from bcc.core.io import printable


def markdown_text(text) -> str:
    """Text from the data (ids, names, paths) made inert in markdown: HTML-escaped, controls shown escaped."""
    return html.escape(printable(str(text)), quote=False)


def cell(v, digits: int = 3) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        if v != 0 and abs(v) < 10 ** -(digits - 1):
            return f"{v:.{digits}g}"  # 0.00612, not 0.006
        return f"{v:.{digits}f}" if abs(v) < 100 else f"{v:.1f}"
    return markdown_text(v).replace("|", "\\|")


def markdown_table(df: pd.DataFrame, index: bool = True, digits: int = 3) -> str:
    cols = ([df.index.name or ""] if index else []) + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for i, row in zip(df.index, df.astype(object).itertuples(index=False), strict=True):
        cells = ([cell(i)] if index else []) + [cell(v, digits) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
