"""`python -m bcc.evaluate` end to end on hand-made run folders: report, tables, W&B run, missing folds."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bcc.cli import evaluate as evaluate_cli
from bcc.core.errors import BadInput
from bcc.core.patterns import OUTPUTS
from bcc.evaluation.pipeline import evaluate
from bcc.evaluation.runs import MissingRunsError
from tests.helpers.runs import BCC_ACC, write_dataset, write_runs, write_val


def _cfg(out, *extra):
    return evaluate_cli.load_config([f"output_dir={out}", "wandb.enabled=false", "eval.complexity=false", *extra])


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    """One complete evaluation (complexity at 32 px, W&B offline) shared by the report tests."""
    root = tmp_path_factory.mktemp("eval")
    ds = write_dataset(root / "data" / "synth")
    out = write_runs(root / "outputs" / "demo", dataset=ds)
    code = evaluate_cli.main([f"output_dir={out}", "eval.bench_batch=1", "eval.bench_repeats=1"])
    assert code == 0
    return out / "report"


def test_thresholds_json_beside_each_checkpoint_for_predict(full_report):
    """eval leaves the operating point where bcc.predict looks for it; each fold's p(BCC) threshold comes
    from the other folds' predictions, never its own test fold."""
    import json

    import torch

    from bcc.deploy.thresholds import load_thresholds
    from bcc.models.calibration import threshold_for_sensitivity

    out = full_report.parent
    preds = pd.concat([pd.read_csv(p) for p in sorted(out.glob("mobilenet/fold*/stage3/predictions.csv"))])
    for fold in range(5):
        job = out / "mobilenet" / f"fold{fold}" / "stage3"
        d = json.loads((job / "thresholds.json").read_text())
        rest = preds[preds["fold"] != fold]
        assert d["bcc"] == pytest.approx(threshold_for_sensitivity(rest["y_bcc"], rest["p_bcc"], 0.95))
        assert d["patterns"] == {c: 0.5 for c in d["patterns"]} and len(d["patterns"]) == 7
        torch.save({"state_dict": {}}, job / "best.ckpt")  # the fixture's runs have no weights
        th = load_thresholds(job / "best.ckpt")
        assert th.bcc == pytest.approx(d["bcc"]) and "operating point" in th.source


def test_report_and_tables_written(full_report):
    per_fold = pd.read_csv(full_report / "table3_per_fold.csv")
    bcc = per_fold[per_fold["row"] == "BCC/Non-BCC"].sort_values("fold")
    assert list(bcc["accuracy"]) == pytest.approx(BCC_ACC) and set(bcc["n"]) == {4}
    thr = pd.read_csv(full_report / "thresholds.csv")
    assert list(thr["fold"]) == [0, 1, 2, 3, 4] and (thr[list(OUTPUTS)] == 0.5).all().all()  # eval.thresholds=0.5
    stages = pd.read_csv(full_report / "stages.csv").set_index("stage")
    assert list(stages.index) == [0, 1, 2, 3] and (stages["folds"] == 5).all()
    assert stages.loc[3, "bcc_accuracy"] == pytest.approx(sum(BCC_ACC) / 5)
    cal = pd.read_csv(full_report / "calibration.csv").iloc[0]
    assert cal["target_sensitivity"] == 0.95 and cal["n"] == 20 and 0 <= cal["ece"] <= 1
    for fig in ("roc", "confusion", "patterns", "reliability"):
        pixels = np.asarray(Image.open(full_report / "figures" / f"mobilenet_{fig}.png").convert("L"))
        assert min(pixels.shape) > 200 and pixels.std() > 10, fig  # a drawn figure, not a blank canvas
    t3 = pd.read_csv(full_report / "table3.csv")
    row = t3[(t3["section"] == "BCC/Non-BCC") & (t3["row"] == "BCC/Non-BCC")].iloc[0]
    assert row["accuracy_mean"] == pytest.approx(sum(BCC_ACC) / 5) and row["folds"] == 5
    assert {"No-pattern (all zeros)", "BCC pattern detection"} <= set(t3["row"])
    t5 = pd.read_csv(full_report / "table5.csv")
    r = t5.iloc[0]
    assert r["backbone"] == "mobilenet" and r["input_px"] == 32
    assert r["GFLOPs"] == pytest.approx(2 * r["GMACs"], rel=1e-4) and 2.0 < r["params_M"] < 2.5 and r["cpu_ms_per_image"] > 0
    assert r["bcc_accuracy"] == pytest.approx(0.8)
    md = (full_report / "report.md").read_text()
    for text in ("## Table 3", "## Table 5", "stage 0 — the whole network trained from scratch", "of the 5 this report expects",
                 "seed 0 on Test CPU, 2 cores, torch 2.14.1",
                 "n = 20 test images", "Thresholds**: 0.5", "![ROC per output](figures/mobilenet_roc.png)",
                 "Fleiss' κ", "Rater quality", "## Calibration", "deprioritised", "## All stages"):
        assert text in md, text
    files = md.split("## Files", 1)[1]  # read from the folder: every table the run wrote, none kept by hand
    assert all(f"`{p.name}`" in files for p in full_report.glob("*.csv")) and "`figures/`" in files
    assert "the W&B summary run in `wandb/`" in files


def test_wandb_offline_summary_run_written(full_report):
    """One offline run (to `wandb sync`) holding the report's tables as written to CSV, and its figures."""
    runs = list((full_report / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and len(list(runs[0].glob("run-*.wandb"))) == 1
    media = runs[0] / "files" / "media"
    logged = json.loads(next((media / "table" / "tables").glob("table3_0_*.table.json")).read_text())
    t3 = pd.read_csv(full_report / "table3.csv")
    assert logged["columns"] == list(t3.columns) and len(logged["data"]) == len(t3)
    assert [r[logged["columns"].index("accuracy_mean")] for r in logged["data"]] == pytest.approx(
        list(t3["accuracy_mean"]), nan_ok=True)
    assert {p.name.split("_")[0] for p in (media / "images" / "figures" / "mobilenet").glob("*.png")} >= {
        "roc", "confusion", "patterns", "reliability"}


def test_missing_fold_and_stage_named_with_command(tmp_path):
    out = write_runs(tmp_path / "outputs" / "demo")
    shutil.rmtree(out / "mobilenet" / "fold2" / "stage3")
    shutil.rmtree(out / "mobilenet" / "fold4" / "stage2")
    shutil.rmtree(out / "mobilenet" / "fold4" / "stage3")
    (out / "mobilenet" / "fold1" / "stage3" / "predictions.csv").unlink()
    with pytest.raises(MissingRunsError) as e:
        evaluate(_cfg(out))
    msg = str(e.value)
    assert "3 of 5 folds missing" in msg
    assert "mobilenet fold 2 stage 3" in msg and "does not exist" in msg
    assert "`python -m bcc.train experiment=demo backbone=mobilenet stage=3 fold=2`" in msg
    assert "`python -m bcc.train experiment=demo backbone=mobilenet stage=2,3 fold=4 --multirun`" in msg
    assert "fold 1 stage 3" in msg and "no predictions.csv (unfinished or failed job)" in msg
    assert not (out / "report" / "table3.csv").exists()


def test_folders_beside_the_jobs_are_passed_over_and_named(tmp_path):
    """A backup (``fold4.bak``) or a typo (``foldx``) beside the fold folders is no job: never a crash, never a
    fold; when a fold is missing, the message names them."""
    out = write_runs(tmp_path / "o", stages=(3,))
    shutil.copytree(out / "mobilenet" / "fold4", out / "mobilenet" / "fold4.bak")
    shutil.copytree(out / "mobilenet" / "fold3", out / "mobilenet" / "foldx")
    shutil.copytree(out / "mobilenet" / "fold3" / "stage3", out / "mobilenet" / "fold3" / "stage3-old")
    ev = evaluate(_cfg(out, "eval.table4=null", "eval.linear_probe=false"))
    assert sorted(ev.results[0].n_test) == [0, 1, 2, 3, 4]
    shutil.rmtree(out / "mobilenet" / "fold4")
    with pytest.raises(MissingRunsError, match=r"1 of 5 folds missing") as e:
        evaluate(_cfg(out, "eval.table4=null", "eval.linear_probe=false"))
    odd = str(e.value).splitlines()[-2]
    assert odd.endswith("not read — a job folder is <backbone>/fold<k>/stage<s>)")
    assert all(name in odd for name in ("mobilenet/fold4.bak", "mobilenet/foldx", "fold3/stage3-old"))


def test_a_dataset_in_the_working_directory_is_not_the_runs(tmp_path, data_dir, monkeypatch):
    """After `make demo` the checkout holds data/synthetic and outputs/demo; the runs tests write name a
    dataset of their own, so an evaluation run from there never finds the checkout's (which once ran its
    real-data checks on runs without checkpoints: CheckpointError)."""
    here = tmp_path / "checkout"
    shutil.copytree(data_dir / "synthetic-smoke", here / "data" / "synthetic", ignore=shutil.ignore_patterns(".cache"))
    write_runs(here / "outputs" / "demo", stages=(3,))
    monkeypatch.chdir(here)
    out = write_runs(tmp_path / "o", stages=(3,))
    ev = evaluate(_cfg(out, "eval.table4=null"))
    assert ev.dataset is not None and not ev.dataset.n_images  # the runs' own dataset is not at hand
    assert not list((here / "outputs" / "demo").glob("report*"))


def test_missing_fold_exit_code_and_allow_incomplete(tmp_path, capsys):
    out = write_runs(tmp_path / "o", stages=(1, 2, 3))
    write_runs(tmp_path / "o", backbone="convnext", stages=(1, 2, 3), folds=[0, 1, 3, 4])
    args = [f"output_dir={tmp_path / 'o'}", "experiment=backbone_sweep", "wandb.enabled=false", "eval.complexity=false"]
    assert evaluate_cli.main(args) == 2
    err = capsys.readouterr().err
    assert "convnext fold 2 stage 3" in err and "experiment=backbone_sweep backbone=convnext stage=1,2,3 fold=2" in err
    ev = evaluate(evaluate_cli.load_config([*args, "eval.allow_incomplete=true"]))
    assert [r.backbone for r in ev.results] == ["mobilenet"]
    md = (out / "report" / "report.md").read_text()
    assert "## Missing runs" in md and "convnext fold 2 stage 3" in md
    assert set(pd.read_csv(out / "report" / "table3.csv")["backbone"]) == {"mobilenet"}


def test_thresholds_val_uses_validation_predictions(tmp_path):
    out = write_runs(tmp_path / "o", stages=(3,))
    with pytest.raises(MissingRunsError, match=r"calibration\.json"):
        evaluate(_cfg(out, "eval.thresholds=val"))
    write_val(out)
    ev = evaluate(_cfg(out, "eval.thresholds=val"))
    thr = pd.read_csv(out / "report" / "thresholds.csv")
    assert len(thr) == 5 and thr["bcc"].between(0.3, 0.4).all()  # Youden threshold between 0.3 and 0.4
    assert "validation split" in (out / "report" / "report.md").read_text()
    # at ~0.35, D's 0.2 is still a miss but C's 0.6 (fold 3) is too: same BCC accuracy as at 0.5
    t = ev.results[0].per_fold
    assert list(t[t["row"] == "BCC/Non-BCC"].sort_values("fold")["accuracy"]) == BCC_ACC


def test_allow_mixed_reports_runs_trained_differently(tmp_path):
    """eval.allow_mixed=true averages runs trained at other input sizes, and report.md says which differ."""
    import json

    out = write_runs(tmp_path / "outputs" / "demo", stages=(3,))
    m = json.loads((out / "mobilenet" / "fold1" / "stage3" / "metrics.json").read_text())
    m["trained_on"] = {"image_size": 48}
    (out / "mobilenet" / "fold1" / "stage3" / "metrics.json").write_text(json.dumps(m))
    with pytest.raises(BadInput, match=r"input size \(image_size\) differs: mobilenet folds 0, 2, 3, 4: 32 \| "
                                       r"mobilenet fold 1: 48"):
        evaluate(_cfg(out, "eval.table4=null", "eval.linear_probe=false"))
    ev = evaluate(_cfg(out, "eval.table4=null", "eval.linear_probe=false", "eval.allow_mixed=true"))
    report = (ev.report_dir / "report.md").read_text()
    assert "## Runs trained differently" in report and "mobilenet fold 1: 48" in report
