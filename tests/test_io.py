"""Writes that never lose what was there: folders swapped in whole, shared output folders, killed runs'
temporaries; text from the data made inert where it is shown (markdown, HTML, CSV names)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from bcc.core.errors import UsageError
from bcc.core.io import OWNER, OutputSet, clear_stale, printable, staged_folder
from bcc.deploy.report_html import render_html
from bcc.deploy.thresholds import Thresholds
from bcc.deploy.triage import Lesion, worklist
from bcc.evaluation.markdown import markdown_table
from bcc.explanation.batch import input_name, output_name

RLO = "\u202e"


def test_staged_folder_swaps_in_whole_and_keeps_the_old_one_on_failure(tmp_path):
    out = tmp_path / "report"
    with staged_folder(out, "bcc.evaluate", "report_dir=") as tmp:
        (tmp / "report.md").write_text("first")
    assert (out / "report.md").read_text() == "first" and json.loads((out / OWNER).read_text())
    with pytest.raises(RuntimeError), staged_folder(out, "bcc.evaluate", "report_dir=") as tmp:
        (tmp / "table4.csv").write_text("half of a new report")
        raise RuntimeError("killed")
    assert sorted(p.name for p in out.iterdir()) == [OWNER, "report.md"]  # the old report, not a mix
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no temporary left


def test_staged_folder_never_replaces_a_folder_it_did_not_write(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.md").write_text("precious")
    with pytest.raises(UsageError, match=r"holds files bcc\.evaluate did not write"), \
            staged_folder(mine, "bcc.evaluate", "report_dir="):
        pass
    assert (mine / "thesis.md").read_text() == "precious"


def test_a_killed_runs_temporaries_are_cleared_and_live_ones_kept(tmp_path):
    dead, alive = tmp_path / ".best.onnx.tmp-999999999-x.onnx", tmp_path / f".best.onnx.tmp-{os.getppid()}-y.onnx"
    other = tmp_path / ".other.onnx.tmp-999999999-z.onnx"
    for p in (dead, alive, other):
        p.write_text("partial")
    clear_stale(tmp_path, "best.onnx")
    assert not dead.exists() and alive.exists() and other.exists()


def test_output_set_replaces_only_its_own_earlier_run(tmp_path):
    (tmp_path / "notes.txt").write_text("the user's")
    first = OutputSet(tmp_path, "bcc.explain", ["a_bcc.png", "old_bcc.png", "explanations.csv"], overwrite=False)
    with first.staging() as tmp:
        for n in ("a_bcc.png", "old_bcc.png", "explanations.csv"):
            (tmp / n).write_text("1")
    with pytest.raises(UsageError, match=r"from an earlier run of bcc\.explain"):
        OutputSet(tmp_path, "bcc.explain", ["a_bcc.png", "explanations.csv"], overwrite=False)
    again = OutputSet(tmp_path, "bcc.explain", ["a_bcc.png", "explanations.csv"], overwrite=True)
    with again.staging() as tmp:
        for n in ("a_bcc.png", "explanations.csv"):
            (tmp / n).write_text("2")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".bcc-explain.json", "a_bcc.png", "explanations.csv",
                                                          "notes.txt"]  # the earlier run's old overlay went
    with pytest.raises(UsageError, match=r"notes\.txt, which bcc\.explain did not write"):
        OutputSet(tmp_path, "bcc.explain", ["notes.txt"], overwrite=True)


def test_report_text_from_the_data_is_inert():
    """A rater id holding HTML reaches report.md escaped; a bidirectional override in a name is shown as
    its escape in markdown, HTML and the CSV name, so it cannot make a name display as another."""
    table = pd.DataFrame({"sens.": [0.9]}, index=pd.Index(["<img src=x onerror=alert(1)>"], name="rater"))
    md = markdown_table(table)
    assert "<img" not in md and "&lt;img src=x onerror=alert(1)&gt;" in md
    name = f"patient_{RLO}gnp.exe"
    assert printable(name) == "patient_\\u202egnp.exe" and RLO not in markdown_table(pd.DataFrame({"n": [name]}))
    page = render_html(*worklist([Lesion(name, "unreadable")], Thresholds()), {})  # the triage report's page
    assert RLO not in page and "patient_\\u202egnp.exe" in page
    shown, note = input_name(Path(f"/in/{name}"), Path("/in"))
    assert shown == "patient_\\u202egnp.exe" and "bidirectional" in note
    assert RLO not in output_name(Path(f"/in/{name}"), Path("/in"))
