"""Atomic file writes: a crash or a bad input never leaves a half-written derived file behind."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result gets what open() would give
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_csv(df: pd.DataFrame, path: Path, **kwargs) -> Path:
    """Write a CSV atomically (floats with fixed precision so reruns are byte-identical)."""
    kwargs.setdefault("float_format", "%.6g")
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, lineterminator="\n", **kwargs)
    return Path(path)


def write_text(text: str, path: Path) -> Path:
    """Write a text file atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(obj: Any, path: Path) -> Path:
    """Write a JSON file atomically, indented, with a final newline."""
    return write_text(json.dumps(obj, indent=2) + "\n", path)


def files_digest(*paths: Path, extra: str = "") -> str:
    """SHA-256 over file contents (and a parameter string): decides whether a derived file is stale."""
    h = hashlib.sha256(extra.encode())
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()


#: Unicode's bidirectional controls (ALM, LRM, RLM, the embeddings, overrides and isolates): in a file name or
#: an id they make text display in another order ("gpj.exe" shown as "exe.jpg", or another patient's name).
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str) -> str:
    """`text` with control characters shown as ``\\t``, ``\\n``, ``\\r``, ``\\xNN`` and bidirectional controls
    as ``\\u202e`` …: what is shown is what is stored, in the order stored."""
    return "".join(ch.encode("unicode_escape").decode() if ord(ch) < 0x20 or ord(ch) == 0x7F or ch in BIDI_CONTROLS
                   else ch for ch in text)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(table: pd.DataFrame) -> pd.DataFrame:
    """A copy in which every text cell starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return
    gets a leading ``'`` (OWASP's CSV-injection rule), so a spreadsheet shows it instead of running it.
    Numbers (and numeric columns) are left as they are."""
    out = table.copy()
    for col in out.columns:
        if not (pd.api.types.is_numeric_dtype(out[col]) or pd.api.types.is_bool_dtype(out[col])):
            out[col] = out[col].map(lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_START) else v)
    return out
