"""Bad inputs of ``python -m bcc.real``: every option is checked before anything is written into the dataset
(labels.csv, splits.csv, rater_quality.csv) or the output folder."""
from __future__ import annotations

import re

from tests.bad_inputs.case import Case, Workspace

REAL = "bcc.cli.real:main"


def _merged(ws: Workspace) -> None:
    """A merged set without its derived files (what `bcc.data.public` leaves): any early write would show."""
    root = ws.dataset("data/real/merged")
    for name in ("labels.csv", "splits.csv", "rater_quality.csv", ".labels.inputs.json", ".splits.inputs.json"):
        (root / name).unlink(missing_ok=True)


def real(*extra: str):
    def argv(ws: Workspace) -> list[str]:
        return [f"paths.data_dir={ws.root / 'data'}", f"paths.output_dir={ws.root / 'out'}", "logger=csv", *extra]
    return argv


def _refused(key: str, value: str, message: str) -> Case:
    return Case(f"real/{key}={value}", REAL, real(f"{key}={value}"), 2, message, _merged)


CASES: list[Case] = [
    _refused("data.sampler", "balnced", r"data.sampler='balnced': choose one of \['shuffle', 'balanced'\]"),
    _refused("data.colour", "shades_of_gray", r"shades_of_gray.*shades_of_grey"),
    _refused("data.resize", "crops", r"crops.*'square'.*'crop'|crops.*crop.*square"),
    _refused("data.sampler_power", "-1", r"data.sampler_power=-1: give a number in \[0, 1\]"),
    _refused("data.k", "0", r"data.k=0: expected a whole number in \[2, 100\]"),
    _refused("data.frozen_views", "-2", r"data.frozen_views=-2: expected a whole number in \[0, 64\]"),
    _refused("eval.k", "0", r"eval.k=0: expected"),
    Case("real/unknown-key", REAL, real("data.imagesize=64"), 2, r"data.imagesize", _merged),
    Case("real/no-merged-set", REAL, real(), 2, re.escape("python -m bcc.real --data")),
    Case("real/--data-missing-folder", REAL, lambda ws: ["--data", str(ws.root / "nowhere"), *real()(ws)], 2,
         r"--data .*nowhere: no such folder"),
    Case("real/--data-without-value", REAL, lambda ws: [*real()(ws), "--data"], 2, r"--data needs a folder"),
    Case("real/--controls-unknown", REAL, lambda ws: [*real()(ws), "--controls=lite9"], 2,
         r"--controls=lite9: unknown lite9; choose from mobilenet_scratch_112"),
    Case("real/override-syntax", REAL, real("data.k=[3"), 2, r"cannot read the overrides"),
]
