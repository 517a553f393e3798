"""One row of the bad-input table, and the workspace each row starts from."""
from __future__ import annotations

import importlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Workspace:
    """A fresh folder per case: ``dataset()`` is a small valid dataset in it, ``checkpoint()`` a copy of the
    session's smoke checkpoint (with its run folder), ``lesions()`` a folder of good images."""

    root: Path
    smoke_data: Path  # the session's synthetic-smoke dataset (labels.csv, splits.csv, masks)
    smoke_ckpt: Callable[[], Path]  # trains the session's smoke checkpoint on first use

    def dataset(self, name: str = "ds") -> Path:
        """A copy of the smoke dataset (100 images, masks, labels.csv, splits.csv)."""
        out = self.root / name
        if not out.exists():
            shutil.copytree(self.smoke_data, out, ignore=shutil.ignore_patterns(".cache"))
        return out

    def checkpoint(self) -> Path:
        """A copy of the smoke checkpoint's run folder; returns its best.ckpt."""
        out = self.root / "run"
        if not out.exists():
            shutil.copytree(self.smoke_ckpt().parent, out)
        return out / "best.ckpt"

    def lesions(self, n: int = 3) -> Path:
        """A folder of `n` good lesion images (from the smoke dataset)."""
        out = self.root / "lesions"
        if not out.exists():
            out.mkdir()
            for p in sorted((self.smoke_data / "images").glob("*.png"))[:n]:
                shutil.copy(p, out / p.name)
        return out


@dataclass(frozen=True)
class Case:
    """A bad input: `prepare` spoils the workspace, `argv` is the command line, then `main` must answer."""

    id: str                                     # "<command>/<what is wrong>", the test id
    main: str                                   # "module:function" returning the exit code, e.g. "bcc.cli.predict:main"
    argv: Callable[[Workspace], list[str]]
    rc: int                                     # 2 = bad input or usage, 1 = failure while running
    message: str                                # a regular expression the stderr must match
    prepare: Callable[[Workspace], None] = field(default=lambda ws: None)
    writes_nothing: bool = True                 # no file created or changed under the workspace

    def run(self, ws: Workspace) -> int:
        module, func = self.main.split(":")
        try:
            return getattr(importlib.import_module(module), func)(self.argv(ws))
        except SystemExit as e:  # argparse's own usage errors (exit 2), as `python -m` would return them
            return e.code
