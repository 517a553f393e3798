"""Bad inputs of the held-out path, ``bcc.evaluate experiment=external`` (see tests/bad_inputs/__init__.py):
refused before a fold is scored or anything written. The source is the session's smoke checkpoint laid out
as a run (``<src>/mobilenet/fold0/stage0``; it was trained with 5 folds)."""
from __future__ import annotations

import json
import shutil

from tests.bad_inputs.case import Case, Workspace

EVALUATE = "bcc.cli.evaluate:main"


def external(*extra: str):
    """An external scoring of the workspace's dataset copy by the workspace's source run."""
    return lambda ws: ["experiment=external", f"external.source={ws.root / 'src'}", "external.stage=0",
                       f"data.root={ws.root / 'ds'}", f"paths.output_dir={ws.root / 'out'}", "eval.stage=0",
                       "wandb.enabled=false", "eval.complexity=false", "eval.linear_probe=false", *extra]


def _source(ws: Workspace) -> None:
    """The smoke run as fold 0 of a source experiment, and the dataset copy to score."""
    ws.dataset()
    job = ws.root / "src" / "mobilenet" / "fold0" / "stage0"
    job.parent.mkdir(parents=True)
    shutil.copytree(ws.checkpoint().parent, job)


def _two_backbones(ws: Workspace) -> None:
    """The source holds fold 0 of two backbones (a backbone sweep's layout)."""
    _source(ws)
    shutil.copytree(ws.root / "src" / "mobilenet", ws.root / "src" / "convnext")


def _earlier_run(ws: Workspace) -> None:
    """The output folder holds an external run of fold 0 scored on another test set."""
    _source(ws)
    job = ws.root / "out" / "mobilenet" / "fold0" / "stage0"
    job.mkdir(parents=True)
    (job / "predictions.csv").write_text("image_id,fold\n")
    (job / "metrics.json").write_text(json.dumps({"external": {"source": str(ws.root / "src"),
                                                               "test_set": "/data/isic2018_test",
                                                               "test_set_hash": "sha256:aaaa"}}))


CASES: list[Case] = [
    Case("external/stage-not-a-number", EVALUATE, external("external.stage=abc"), 2,
         r"external\.stage=abc: expected a whole number in \[0, 3\]"),
    Case("external/batch-size-zero", EVALUATE, external("external.batch_size=0"), 2,
         r"external\.batch_size=0: expected a whole number in \[1, 4096\]"),
    Case("external/batch-size-negative", EVALUATE, external("external.batch_size=-3"), 2,
         r"external\.batch_size=-3: expected a whole number in \[1, 4096\]"),
    Case("external/source-missing-folds", EVALUATE, external(), 2,
         r"(?s)stage 0 has 4 of its 5 folds missing.*nothing was scored.*→ `python -m bcc\.train experiment=smoke "
         r".*paths\.output_dir=.*src backbone=mobilenet stage=0 fold=1`", _source),
    Case("external/source-of-several-backbones", EVALUATE, external(), 2,
         r"src: score one at a time: eval\.backbones=\[<one>\] picks it from the backbones it holds at stage 0 "
         r"\(convnext, mobilenet\)", _two_backbones),
    Case("external/backbone-the-source-lacks", EVALUATE, external("eval.backbones=[vit]"), 2,
         r"src: eval\.backbones=\[vit\] names none of the backbones it holds at stage 0 \(mobilenet\)", _source),
    Case("external/output-of-an-earlier-run-on-another-test-set", EVALUATE, external("eval.k=1"), 2,
         r"paths\.output_dir=.*out: .*fold0/stage0 is scored from .*src on /data/isic2018_test; the evaluation would "
         r"average it with this run's folds\. Choose a new paths\.output_dir", _earlier_run),
]
