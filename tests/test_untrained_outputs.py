"""Datasets that label few codes (public dermoscopy: PN and AT at most, often none): which heads were trained is
recorded in the checkpoint, and nothing downstream shows or uses an untrained head's noise."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bcc.core.patterns import CODES, OUTPUTS, clinical_rule, rule_defined
from bcc.evaluation.clinical_metrics import BINARY, NOT_TRAINED, PATTERNS, ROW_RULE, table3
from bcc.models.checkpoint import load_network
from bcc.models.network import trained_outputs, untrained_note

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


def _relabelled(data_dir: Path, dst: Path, keep: tuple[str, ...]) -> Path:
    """The smoke set with a biopsy diagnosis per image and only the codes `keep` rated (the rest blank)."""
    shutil.copytree(data_dir / "synthetic-smoke", dst, ignore=shutil.ignore_patterns(".cache", "*.json", "splits.csv",
                                                                                    "labels.csv", ".*"))
    labels = pd.read_csv(data_dir / "synthetic-smoke" / "labels.csv", dtype={"image_id": str})
    images = pd.read_csv(dst / "images.csv", dtype=str)
    images["diagnosis"] = images["image_id"].map(labels.set_index("image_id")["bcc"]).astype(int)
    images.to_csv(dst / "images.csv", index=False)
    ann = pd.read_csv(dst / "annotations.csv", dtype=str, keep_default_na=False)
    for c in CODES:
        if c not in keep:
            ann[c] = ""
    ann.to_csv(dst / "annotations.csv", index=False)
    return dst


def _train(root: Path, out: Path, capsys) -> str:
    from bcc.training.protocol import run

    run(["experiment=smoke", "data=csv", f"data.root={root}", f"paths.output_dir={out}", "stage=all", "fold=0",
         "logger=csv"])
    return capsys.readouterr().out


def test_pn_and_at_only_train_those_heads_and_the_rule_over_them(data_dir, tmp_path, capsys):
    root = _relabelled(data_dir, tmp_path / "pn_at", keep=("PN", "AT"))
    said = _train(root, tmp_path / "out", capsys)
    assert "stage 3 of fold 0 trains PN, AT; not trained (no labels of both classes): U (0 labelled" in said
    job = tmp_path / "out" / "mobilenet" / "fold0"
    net = load_network(job / "stage3" / "best.ckpt")
    assert net.trained.tolist() == [o in ("bcc", "PN", "AT") for o in OUTPUTS]
    record = net.spec["trained"]
    assert record["PN"]["stage"] == 3 and record["bcc"]["stage"] == 2 and record["PN"]["labelled"] > record["PN"]["positive"] > 0
    assert "U (no labels)" in untrained_note(net.spec)
    # stages 1-2 start from stage 0's backbone with fresh heads: their pattern outputs were never trained
    stage1 = load_network(job / "stage1" / "best.ckpt").trained
    assert stage1.tolist() == [True] + [False] * 7
    preds = pd.read_csv(job / "stage3" / "predictions.csv")
    assert preds[[f"p_{c}" for c in ("U", "ON", "MG", "ML", "SW")]].isna().all().all()  # no prediction, not noise
    assert preds[["p_bcc", "p_PN", "p_AT"]].notna().all().all()
    assert pd.read_csv(job / "stage1" / "predictions.csv")[[f"p_{c}" for c in CODES]].isna().all().all()

    summary, _ = table3(preds, 0.5)
    patterns = summary[summary["section"] == PATTERNS].set_index("row")
    assert patterns.loc["Ulceration", "note"] == NOT_TRAINED and pd.isna(patterns.loc["Pigment Network", "note"])
    rows = summary[summary["section"] == BINARY].set_index("row")
    expected_rule = clinical_rule((preds[[f"p_{c}" for c in CODES]].fillna(0).to_numpy() >= 0.5).astype(int),
                                  known=np.array([c in ("PN", "AT") for c in CODES]))
    y = preds["y_bcc"].to_numpy()
    assert rows.loc[ROW_RULE, "accuracy_mean"] == pytest.approx((expected_rule == y).mean())
    assert pd.isna(rows.loc[ROW_RULE].get("note"))


def test_a_diagnosis_only_dataset_gets_a_stage_3_that_says_it_has_nothing_to_train(data_dir, tmp_path, capsys):
    root = _relabelled(data_dir, tmp_path / "dx", keep=())
    said = _train(root, tmp_path / "out", capsys)
    assert "stage 3 of fold 0: nothing to train" in said
    job = tmp_path / "out" / "mobilenet" / "fold0" / "stage3"
    metrics = pd.read_json(job / "metrics.json", typ="series")
    assert metrics["fitted"] is False or metrics["fitted"] == 0
    net = load_network(job / "best.ckpt")
    assert net.trained.tolist() == [True] + [False] * 7
    preds = pd.read_csv(job / "predictions.csv")
    stage2 = pd.read_csv(job.parent / "stage2" / "predictions.csv")
    assert np.allclose(preds["p_bcc"], stage2["p_bcc"])  # stage 2's model, kept as it was
    summary, _ = table3(preds, 0.5)
    assert summary[summary["section"] == BINARY].set_index("row").loc[ROW_RULE, "note"] == NOT_TRAINED


def test_the_rule_over_known_codes():
    pats = np.array([[1, 0, 0, 0, 0, 0, 1],   # PN and AT
                     [0, 1, 0, 0, 0, 0, 0],   # U only
                     [0, 0, 0, 0, 0, 0, 1]])  # AT only
    assert clinical_rule(pats).tolist() == [0, 1, 1]
    pn_at = np.array([c in ("PN", "AT") for c in CODES])
    assert clinical_rule(pats, pn_at).tolist() == [0, 0, 1]  # U unknown: it cannot fire
    at_only = np.array([c == "AT" for c in CODES])
    assert clinical_rule(pats, at_only).tolist() == [1, 0, 1]  # PN unknown: the negative criterion is not applied
    assert rule_defined(pn_at) and not rule_defined(np.array([c == "PN" for c in CODES]))
    assert trained_outputs({}).all()  # a checkpoint before the record: every output as it was used
    assert trained_outputs({"trained": {"bcc": {"stage": 1, "labelled": 10, "positive": 0}}}).tolist() == [False] * 8
