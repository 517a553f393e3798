"""Value checks of a table read by line (`bcc.data.csvfile`): pandera schemas whose failures name the line.

A :class:`Rule` is one pandera check and the message its failure gives; a :class:`TableSchema` runs its
rules over the whole table at once (pandera's lazy validation) and refuses the table with the message of
the first rule that failed (in the order given), naming the file, the line(s) — the table's index, as an
editor counts lines (or a workbook's rows) — the value and the fix. The contract's own tables
(`bcc.data.contract`) and every adapter's release tables (`ham10000`, `derm7pt`, `ph2`, `isic`) are
checked this way.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from bcc.data.errors import DatasetError

__all__ = ["Failure", "Rule", "TableSchema", "lines_text", "not_blank", "one_of", "unique"]


def lines_text(lines: Sequence[Any], limit: int = 5) -> str:
    """``2, 5, 9`` — the first `limit` lines, and how many more."""
    shown = ", ".join(str(n) for n in lines[:limit])
    return shown + (f" (+{len(lines) - limit} more)" if len(lines) > limit else "")


@dataclass(frozen=True)
class Failure:
    """Where one rule failed: the file, its lines (in file order) and the table, for the rule's message."""

    path: Path
    unit: str                 # "line" of a CSV or text file, "row" of a workbook
    table: pd.DataFrame
    column: str | None
    lines: list[Any]

    @property
    def first(self) -> Any:
        return self.lines[0]

    @property
    def listed(self) -> str:
        return lines_text(self.lines)

    @property
    def value(self) -> Any:
        """The rule's column in the first failing line (the whole row for a row-level rule)."""
        row = self.table.loc[self.first]
        return row if self.column is None else row[self.column]


Message = Callable[[Failure], str]
Test = Callable[[Any], Any]


@dataclass(frozen=True)
class Rule:
    """One check: `passes` takes the column (or, with `column` None, the whole table) and says, row by row,
    which values are fine (`element_wise`: one value at a time); `says` words the refusal."""

    name: str
    passes: Test
    says: Message
    column: str | None = None
    element_wise: bool = False

    def check(self) -> pa.Check:
        return pa.Check(self.passes, element_wise=self.element_wise, error=self.name)


class TableSchema:
    """Rules over a table indexed by line, as one pandera ``DataFrameSchema`` (columns a rule names may be
    absent: an optional column is checked where it is present)."""

    def __init__(self, rules: Sequence[Rule]):
        names = [r.name for r in rules]
        if len(set(names)) != len(names):
            raise ValueError(f"rule names must be unique: {names}")
        self.rules = list(rules)
        columns: dict[str, list[pa.Check]] = {}
        for r in self.rules:
            if r.column is not None:
                columns.setdefault(r.column, []).append(r.check())
        self.schema = pa.DataFrameSchema(
            {c: pa.Column(None, checks, nullable=True, required=False) for c, checks in columns.items()},
            checks=[r.check() for r in self.rules if r.column is None])

    def failures(self, table: pd.DataFrame, path: Path, unit: str = "line") -> list[tuple[Rule, Failure]]:
        """Every rule that fails on `table` and where, in the schema's order."""
        try:
            self.schema.validate(table, lazy=True)
        except SchemaErrors as e:
            cases = e.failure_cases
            found = []
            for r in self.rules:
                failed = set(cases.loc[cases["check"] == r.name, "index"])
                if failed:
                    lines = [n for n in table.index if n in failed]
                    found.append((r, Failure(Path(path), unit, table, r.column, lines)))
            return found
        return []

    def validate(self, table: pd.DataFrame, path: Path, unit: str = "line") -> pd.DataFrame:
        """`table`, or a ``DatasetError`` with the message of the first rule that fails."""
        failures = self.failures(table, path, unit)
        if failures:
            rule, failure = failures[0]
            raise DatasetError(rule.says(failure))
        return table


def not_blank(column: str, says: Message) -> Rule:
    return Rule(f"{column} not blank", lambda s: s.ne(""), says, column)


def one_of(column: str, allowed: Collection[str], says: Message, transform: Test | None = None) -> Rule:
    """`column`'s values (after `transform`, e.g. lower-casing) among `allowed`."""
    values = list(allowed)
    return Rule(f"{column} one of {values}", lambda s: (transform(s) if transform else s).isin(values), says, column)


def unique(keys: Sequence[str], says: Message | None = None) -> Rule:
    """No two rows repeat `keys`; by default the message names the first repeated value and every line
    repeating one."""
    keys = list(keys)

    def duplicate(f: Failure) -> str:
        first = f.table.loc[f.first, keys].tolist()
        return f"{f.path}: duplicate {'+'.join(keys)} {first} on {f.unit}s {f.listed}; keep one row each"

    return Rule(f"unique {'+'.join(keys)}", lambda df: ~df.duplicated(keys, keep=False), says or duplicate)
