"""The fold ensemble as one ONNX model (bcc.deploy.ensemble), its guaranteed threshold in the metadata, and
what triage makes of both: the members' disagreement flags a case; the report states the guarantee."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from bcc.cli.export import main as export_main
from bcc.cli.predict import main as predict_main
from bcc.core.errors import BadInput
from bcc.core.patterns import CODES
from bcc.deploy.ensemble import export_ensemble
from bcc.deploy.model_card import read_metadata
from bcc.deploy.onnx_model import FOLDS_NAME, INPUT_NAME, MAPS_NAME, OUTPUT_NAME, ort_session
from bcc.deploy.thresholds import Thresholds
from bcc.deploy.triage import verdicts
from bcc.explanation.gradcam import raw_cams
from tests.helpers.checkpoints import make_net, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = 64


def _net(seed: int):
    """A random network whose heads are scaled down so that its probabilities are not all 0 or 1."""
    net = make_net(image_size=SIZE, seed=seed)
    with torch.no_grad():
        for head in net.heads.values():
            head.weight.mul_(0.02)
    return net


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    d = tmp_path_factory.mktemp("folds")
    return [save_checkpoint(_net(s), d / f"fold{s}.ckpt", SIZE) for s in range(3)]


def test_the_graph_averages_the_members_logits_and_maps(members, tmp_path):
    path = export_ensemble(members, tmp_path / "ens.onnx", verbose=False)
    x = np.random.default_rng(1).random((4, 3, SIZE, SIZE), dtype=np.float32)
    logits, cams, folds = ort_session(path).run([OUTPUT_NAME, MAPS_NAME, FOLDS_NAME], {INPUT_NAME: x})
    nets = [_net(s) for s in range(3)]
    with torch.inference_mode():
        want = np.stack([n(torch.from_numpy(x)).numpy() for n in nets], 1)
    np.testing.assert_allclose(folds, want, atol=1e-4)
    np.testing.assert_allclose(logits, want.mean(1), atol=1e-4)
    np.testing.assert_allclose(cams, np.mean([raw_cams(n, torch.from_numpy(x))[0].numpy() for n in nets], 0), atol=1e-4)
    meta = read_metadata(path)
    assert json.loads(meta["ensemble"])["members"] == [str(m.resolve()) for m in members]
    assert json.loads(meta["maps"])["output"] == MAPS_NAME


def test_members_of_different_sizes_are_refused(members, tmp_path):
    other = save_checkpoint(make_net(image_size=96, seed=5), tmp_path / "big.ckpt", 96)
    with pytest.raises(BadInput, match=r"big\.ckpt: mobilenet at 96 px .*, but .*fold0\.ckpt is mobilenet at 64 px "
                                       r".*share backbone and preprocessing"):
        export_ensemble([members[0], other], tmp_path / "x.onnx", verbose=False)
    assert not (tmp_path / "x.onnx").exists()


def test_two_of_five_folds_are_exported_as_what_they_are(tmp_path, capsys):
    """Two fold checkpoints of a 5-fold run (folds and stage from the run folder, k from its config) make
    an ensemble the card and the message call 2 of the 5 fold models, not the fold ensemble; triage says so."""
    from bcc.deploy.model_card import ModelCard
    from bcc.deploy.scorers import OnnxScorer

    paths = []
    for fold in (0, 1):
        job = tmp_path / "run" / "mobilenet" / f"fold{fold}" / "stage3"
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "config.yaml").write_text("data: {k: 5}\n")
        paths.append(save_checkpoint(_net(fold), job / "best.ckpt", SIZE))
    path = export_ensemble(paths, tmp_path / "two.onnx")
    what = "2 of the 5 fold models (folds 0, 1, stage 3): not the whole fold ensemble"
    assert what in capsys.readouterr().out
    assert ModelCard.read(path).ensemble["what"] == what and what in OnnxScorer(path).describe


def test_a_bracket_glob_quoted_for_hydra_picks_its_members(members, tmp_path):
    """The quoting the unquoted-glob refusal suggests ("checkpoint='.../fold[0-1].ckpt'") reaches bcc as a glob."""
    from bcc.deploy.model_card import ModelCard

    out = tmp_path / "two.onnx"
    assert export_main([f"checkpoint='{members[0].parent}/fold[0-1].ckpt'", f"output={out}"]) == 0
    assert ModelCard.read(out).ensemble["members"] == [str(m.resolve()) for m in members[:2]]


def test_members_that_disagree_flag_a_case():
    th = Thresholds().update({"bcc": 0.3, "uncertainty_band": 0.0}, "test")
    probs = np.array([[0.5] + [0.05] * 7, [0.5] + [0.05] * 7])
    v = verdicts(probs, th, folds=np.array([[0.4, 0.6, 0.5], [0.1, 0.9, 0.5]]))
    assert list(v.review) == [1, 1]  # both: head BCC vs the rule; the second also splits the folds
    assert not any("fold models disagree" in r for r in v.review_reason[0])
    assert v.review_reason[1][-1].endswith("the 3 fold models disagree: p_bcc from 0.10 to 0.90, on both sides of the "
                                       "operating threshold 0.30")
    assert list(v.fold_spread) == pytest.approx([0.2, 0.8])
    assert verdicts(probs, th).fold_spread.isna().all()  # a single model: blank


def test_export_with_a_guarantee_then_triage_states_it(members, data_dir, tmp_path):
    """bcc.export on a glob of checkpoints with guarantee_data: the threshold and ε, δ, the calibration
    set's size go into the model; predict ranks with it, flags split folds and the report states the
    guarantee — and says it is not in force when the threshold is overridden."""
    data = data_dir / "synthetic-smoke"
    out = tmp_path / "ens.onnx"
    assert export_main([f"checkpoint={members[0].parent}/fold*.ckpt", f"output={out}", f"guarantee_data={data}",
                        "epsilon=0.1", "delta=0.2"]) == 0
    meta = read_metadata(out)
    g = json.loads(meta["guarantee"])
    labels = pd.read_csv(data / "labels.csv")
    assert (g["epsilon"], g["delta"], g["n_calibration"], g["n_bcc"]) == (0.1, 0.2, len(labels), int(labels.bcc.sum()))
    assert json.loads(meta["thresholds"])["bcc"] == g["threshold"] and 0 < g["deprioritised"] < 1
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for p in sorted((data / "images").glob("*.png"))[:6]:
        shutil.copy(p, inbox / p.name)
    res = tmp_path / "triage"
    assert predict_main([f"checkpoint={out}", f"input={inbox}", f"output={res}", "progress=false", "threads=1"]) == 0
    t = pd.read_csv(res / "triage.csv")
    assert t.fold_spread.notna().all() and (t.fold_spread >= 0).all()
    clear = (t.p_bcc - g["threshold"]).abs() > 1e-4  # triage.csv keeps 4 decimals
    assert ((t.p_bcc >= g["threshold"]) == (t.diagnosis_verdict == "BCC"))[clear].all()
    html = (res / "report.html").read_text()
    assert re.search(rf"ε = 0\.1, δ = 0\.2, calibration set of {len(labels)} cases \({g['n_bcc']} BCC\)", html)
    assert "NOT IN FORCE" not in html and "ensemble of 3 fold models" in html
    assert predict_main([f"checkpoint={out}", f"input={inbox}", f"output={tmp_path / 'over'}", "threshold=0.9",
                         "progress=false", "threads=1"]) == 0
    assert "NOT IN FORCE for this worklist: the operating threshold 0.9000" in (tmp_path / "over" / "report.html").read_text()
    run = json.loads((res / "run.json").read_text())
    assert run["guarantee"]["applies"] and run["maps"] and run["scored"] == 6
    assert np.load(res / "maps.npy").shape == (6, 8, 2, 2)
    assert set(CODES) <= {c.removeprefix("p_") for c in t.columns}


def test_the_pages_maps_are_the_raw_maps_up_to_their_scale():
    """report.html carries each map divided by its largest |value| (maps_attribute): after the page's
    post-processing (ReLU, min-max, resize, min-max) that is the raw map's picture."""
    from bcc.deploy.maps_js import maps_attribute
    from bcc.explanation.gradcam import postprocess

    raw = np.random.default_rng(3).normal(scale=40, size=(8, 7, 7)).astype(np.float32)
    raw[2] = 0  # a blank map stays blank
    sent = np.array(json.loads(maps_attribute(raw)), dtype=np.float32)
    assert np.abs(sent).max() == 1 and (sent[2] == 0).all()
    np.testing.assert_allclose(postprocess(torch.from_numpy(sent[None]), (160, 120)).numpy(),
                               postprocess(torch.from_numpy(raw[None]), (160, 120)).numpy(), atol=1e-4)


def test_an_ensemble_is_quantised_when_told_which_images_check_it(members, data_dir, tmp_path):
    """int8 of the fold ensemble, its BCC decisions and maps compared with fp32's on the named fold."""
    out = tmp_path / "ens.onnx"
    assert export_main([f"checkpoint={members[0].parent}/fold*.ckpt", f"output={out}", "quantize=int8",
                        f"check_data={data_dir / 'synthetic-smoke'}", "check_fold=1", "n_calibration=8",
                        "max_accuracy_drop=1.0"]) == 0
    q = out.with_suffix(".int8.onnx")
    card = json.loads(read_metadata(q)["int8_check"])
    assert card["n"] == 20 and 0 <= card["decisions_agree"] <= 20 and "test fold 1" in card["data"]
    assert json.loads(read_metadata(q)["ensemble"])["members"] == [str(m.resolve()) for m in members]
