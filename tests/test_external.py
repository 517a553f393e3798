"""The held-out path (``bcc.evaluate experiment=external``) on a 3-fold source that ``bcc.train`` made: the fold
count comes from the source, a missing fold is named with a training command that works, a stale fold of
another run is never averaged in, and a set without BCC or with several sources is handled."""
from __future__ import annotations

import json
import shlex
import shutil

import pandas as pd
import pytest

from bcc.cli.evaluate import main as evaluate_main
from bcc.cli.train import main as train_main
from bcc.data.consensus import ensure_labels
from bcc.data.folds import ensure_splits
from bcc.data.synthetic import generate

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


@pytest.fixture(scope="module")
def source(data_dir, tmp_path_factory):
    """Stage 0 of folds 0, 1, 2 trained by ``bcc.train`` with ``data.k=3`` (the smoke default is 5) on a copy
    of the smoke dataset."""
    root = tmp_path_factory.mktemp("external")
    shutil.copytree(data_dir / "synthetic-smoke", root / "data" / "synthetic-smoke",
                    ignore=shutil.ignore_patterns(".cache", "splits.csv", ".splits.inputs.json"))
    out = root / "source"
    assert train_main(["experiment=smoke", f"paths.data_dir={root / 'data'}", f"paths.output_dir={out}", "stage=0",
                       "fold=0-2", "data.k=3", "logger=csv", "--multirun"]) == 0
    return out


@pytest.fixture(scope="module")
def test_set(tmp_path_factory):
    """24 synthetic pictures of several centres, with labels (and, like a merged set, folds)."""
    root = generate(tmp_path_factory.mktemp("held-out") / "set", n=24, size=64, seed=7, progress=False)
    ensure_labels(root)
    return root


def external(source, root, out, *extra):
    return ["experiment=external", f"external.source={source}", "external.stage=0", f"data.root={root}",
            f"paths.output_dir={out}", "eval.stage=0", "eval.table4=null", "eval.complexity=false",
            "eval.linear_probe=false", "wandb.enabled=false", *extra]


def test_the_fold_count_is_the_sources_and_a_stale_fold_is_refused(source, test_set, tmp_path, capsys):
    out = tmp_path / "scored"
    assert evaluate_main(external(source, test_set, out)) == 0
    said = capsys.readouterr().out
    assert sorted(p.name for p in (out / "mobilenet").iterdir()) == ["fold0", "fold1", "fold2"]
    assert len(pd.read_csv(out / "report-stage0" / "ensemble.csv")) == 4  # 3 fold models and their ensemble
    assert "over 3 fold models" in said
    metrics = json.loads((out / "mobilenet" / "fold1" / "stage0" / "metrics.json").read_text())
    assert metrics["trained_on"]["k"] == 3 and metrics["external"]["test_set"] == str(test_set.resolve())
    # the same folder again with another test set: its folds would be averaged with the new ones
    other = tmp_path / "other"
    shutil.copytree(test_set, other)
    (other / "images.csv").write_text((other / "images.csv").read_text().replace("centre_01", "centre_09"))
    assert evaluate_main(external(source, other, out)) == 2
    err = capsys.readouterr().err
    assert f"scored from {source.resolve()} on {test_set.resolve()}" in err and "new paths.output_dir" in err
    # a fold the source does not have (left by a 4-fold source scored into the same folder) is refused too
    shutil.copytree(out / "mobilenet" / "fold2", out / "mobilenet" / "fold3")
    assert evaluate_main(external(source, test_set, out)) == 2
    assert "fold 3, which" in capsys.readouterr().err
    assert evaluate_main(external(source, test_set, source)) == 2
    assert "is external.source itself" in capsys.readouterr().err


def test_a_missing_source_fold_names_a_training_command_that_works(source, test_set, tmp_path, capsys):
    partial = tmp_path / "partial"
    shutil.copytree(source, partial)
    shutil.rmtree(partial / "mobilenet" / "fold2")
    out = tmp_path / "scored"
    assert evaluate_main(external(partial, test_set, out)) == 2
    err = capsys.readouterr().err
    assert "1 of its 3 folds missing" in err and "nothing was scored" in err and not out.exists()
    command = err.split("→ `")[1].split("`")[0]
    assert "experiment=external" not in command and "data.k=3" in command
    args = shlex.split(command)
    assert args[:3] == ["python", "-m", "bcc.train"]
    assert train_main(args[3:]) == 0  # the suggested command trains the missing fold
    assert evaluate_main(external(partial, test_set, out)) == 0


def test_a_set_without_bcc_says_why_it_has_no_auroc(source, test_set, tmp_path, capsys):
    no_bcc = tmp_path / "no-bcc"
    shutil.copytree(test_set, no_bcc, ignore=shutil.ignore_patterns("masks"))
    labels = pd.read_csv(no_bcc / "labels.csv")
    keep = set(labels.loc[labels["bcc"] == 0, "image_id"])
    for name in ("images.csv", "annotations.csv"):  # the rows of the non-BCC pictures, as they were written
        lines = (no_bcc / name).read_text().splitlines(keepends=True)
        (no_bcc / name).write_text("".join([lines[0], *(x for x in lines[1:] if x.split(",")[0] in keep)]))
    (no_bcc / "labels.csv").unlink()
    out = tmp_path / "scored"
    assert evaluate_main(external(source, no_bcc, out)) == 0
    said = capsys.readouterr().out
    assert "nan" not in said and f"no BCC AUROC: the {len(keep)} labelled pictures hold no BCC case" in said
    assert "no BCC AUROC" in (out / "report-stage0" / "report.md").read_text()


def test_a_merged_set_with_folds_is_scored_without_the_sources_checkpoints(source, test_set, tmp_path):
    """A multi-source set with its own splits.csv: the source checks that need each run's best.ckpt and
    training folds (probe, shortcuts) are left out and said so, instead of failing after the scoring."""
    merged = tmp_path / "merged"
    shutil.copytree(test_set, merged)
    ensure_splits(merged, k=2)
    out = tmp_path / "scored"
    assert evaluate_main(external(source, merged, out)) == 0
    report = (out / "report-stage0" / "report.md").read_text()
    assert "An external set: the shortcut baselines and the source probe" in report
