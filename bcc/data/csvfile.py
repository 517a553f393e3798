"""Reading a contract CSV (or a release's table) as an editor shows it: stripped strings indexed by line.

Lines are counted as an editor counts them — physical lines, the header is line 1, a quoted value spanning
lines counts each of them — so every later message (`bcc.data.schema`) can name the line a user opens.
The file must be UTF-8 and comma-separated; anything else is refused naming the line, the column and
what the file looks like instead.
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from bcc.core.patterns import CODES
from bcc.data.errors import DatasetError

__all__ = ["DELIMITERS", "read_csv"]

_BREAK = re.compile(rb"\r\n|\r|\n")  # the line breaks an editor counts
DELIMITERS = ";\t|"  # what a CSV written in another convention is separated by


def _decode_text(path: Path, raw: bytes) -> str:
    """UTF-8 text; otherwise an error naming the line and column of the first byte that is not UTF-8."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        breaks = list(_BREAK.finditer(raw, 0, e.start))
        begin = breaks[-1].end() if breaks else 0
        end = m.start() if (m := _BREAK.search(raw, e.start)) else len(raw)
        column = len(raw[begin:e.start].decode("utf-8-sig")) + 1  # everything before the bad byte decoded
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            hint = "the file is UTF-16 (Excel's 'Unicode text')"
        else:
            hint = f"read as Windows-1252 the line says {raw[begin:end].decode('cp1252', 'replace')[:80]!r}"
        raise DatasetError(f"{path}: line {len(breaks) + 1}, column {column} (byte {e.start}): not UTF-8 "
                           f"(byte 0x{raw[e.start]:02x}: {e.reason}); {hint}; re-save the file as UTF-8 CSV "
                           f"(e.g. `iconv -f cp1252 -t utf-8`)") from None


def _records(path: Path, text: str) -> Iterator[tuple[int, list[str]]]:
    """(line the record starts on, its fields) for every non-blank record, counting physical lines."""
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True, strict=True)
    start = 1
    try:
        for fields in reader:
            if len(fields) > 1 or (fields and fields[0].strip()):
                yield start, fields
            start = reader.line_num + 1
    except csv.Error as e:
        raise DatasetError(f"{path}: line {start}: malformed CSV ({e}); a value holding a comma, quote or line "
                           f"break must be in double quotes, with a quote inside it written twice (\"\")") from None


def read_csv(path: Path, required: tuple[str, ...], optional: tuple[str, ...] = (),
             allow_unknown: bool = False) -> pd.DataFrame:
    """A contract CSV as stripped strings, indexed by the line each row starts on (named ``line``).

    Checks the encoding, delimiter, emptiness, the column set and that every row has the header's number
    of fields. `allow_unknown` keeps columns outside `required` + `optional` (a public dataset's own
    tables carry more than an adapter reads).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found; every dataset needs it (see docs/dataset.md)")
    text = _decode_text(path, path.read_bytes())
    records = _records(path, text)
    first = next(records, None)
    if first is None:
        raise DatasetError(f"{path}: file is empty; expected a header line {','.join(required)}")
    header_line, header = first[0], [c.strip() for c in first[1]]
    where = f"{path}: line {header_line}"
    if len(header) == 1 and len(required) > 1:
        try:
            hint = f"it looks {csv.Sniffer().sniff(header[0], delimiters=DELIMITERS).delimiter!r}-separated"
        except csv.Error:
            hint = "no comma found in the header"
        raise DatasetError(f"{where}: {hint}; the contract is comma-separated with header {','.join(required)}")
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise DatasetError(f"{where}: column(s) {repeated} appear more than once; keep one of each")
    missing = [c for c in required if c not in header]
    if missing:
        raise DatasetError(f"{where}: missing column(s) {missing}; the header must contain {','.join(required)}")
    unknown = [c for c in header if c not in required + optional]
    if unknown and not allow_unknown:
        raise DatasetError(f"{where}: unknown column(s) {unknown}; allowed: {list(required + optional)} "
                           f"(pattern codes are {list(CODES)}); rename or drop them")
    lines, rows = [], []
    for line, fields in records:
        if len(fields) != len(header):
            fix = ("a value holding a comma must be in double quotes; otherwise remove the extra field(s)"
                   if len(fields) > len(header) else
                   "add the missing field(s): a blank value still needs its comma")
            raise DatasetError(f"{path}: line {line}: {len(fields)} fields, but the header (line {header_line}) has "
                               f"{len(header)} ({','.join(header)}); {fix}")
        lines.append(line)
        rows.append([v.strip() for v in fields])
    if not rows:
        raise DatasetError(f"{path}: header only, no data rows")
    return pd.DataFrame(rows, columns=header, index=pd.Index(lines, name="line"), dtype=str)
