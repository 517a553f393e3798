"""Every row of the bad-input table (tests/bad_inputs/): the exit code, a message naming what is wrong,
no traceback, and nothing written or half-written."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.bad_inputs import case as case_module
from tests.bad_inputs.cases_data import CASES as DATA
from tests.bad_inputs.cases_deploy import CASES as DEPLOY
from tests.bad_inputs.cases_external import CASES as EXTERNAL
from tests.bad_inputs.cases_files import CASES as FILES
from tests.bad_inputs.cases_public import CASES as PUBLIC
from tests.bad_inputs.cases_real import CASES as REAL
from tests.bad_inputs.cases_review import CASES as REVIEW
from tests.bad_inputs.cases_training import CASES as TRAINING

ALL = [*DATA, *PUBLIC, *TRAINING, *DEPLOY, *EXTERNAL, *FILES, *REVIEW, *REAL]
pytestmark = pytest.mark.usefixtures("one_thread")


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


def test_case_ids_are_unique():
    ids = [c.id for c in ALL]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


@pytest.mark.parametrize("case", ALL, ids=lambda c: c.id)
def test_bad_input(case, tmp_path, data_dir, ckpt_factory, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a command writing into its working directory is caught as well
    ws = case_module.Workspace(tmp_path, data_dir / "synthetic-smoke", ckpt_factory)
    case.prepare(ws)
    before = _snapshot(tmp_path)
    capsys.readouterr()
    rc = case.run(ws)
    err = capsys.readouterr().err
    assert rc == case.rc, f"exit code {rc}, expected {case.rc}; stderr:\n{err}"
    assert re.search(case.message, err), f"message {case.message!r} not in stderr:\n{err}"
    assert "Traceback" not in err, err
    if case.writes_nothing:
        assert _snapshot(tmp_path) == before, "the refused command wrote or changed files"
