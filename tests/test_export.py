"""bcc.export (bcc.deploy.onnx_export, bcc.deploy.int8): ONNX export equal to torch within 1e-4 (logits and the 8
Grad-CAM maps in the graph), dynamic batch, embedded metadata, the int8 model, its accuracy guard and its maps
against fp32, predict and explain on the exported models (their own maps, or torch's where the graph has none).
Refused command lines (unsafe or garbage checkpoints, bad options): tests/bad_inputs/cases_deploy.py.

About "int8 keeps BCC accuracy within 1 point": the checkpoint a CI run can afford (smoke: 32 px, two
epochs from scratch, BatchNorm statistics from two batches of 8) is so badly conditioned that ±0.5/255
input noise alone moves its p(BCC) by 0.085 on average; int8 flips about half of its decisions, so no
8-bit model of it can keep its accuracy. The export therefore checks the int8 model on the checkpoint's
own test fold, comparing fp32 and int8 ONNX on the same images, and keeps it only within 1 point. These
tests check that guard against figures computed here independently (from onnxruntime and labels.csv),
and that it refuses exactly when the difference exceeds 1 point.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from PIL import Image

from bcc.cli.explain import main as explain_main
from bcc.cli.export import main
from bcc.cli.predict import main as predict_main
from bcc.core.errors import BadInput
from bcc.core.patterns import CODES, OUTPUTS
from bcc.data.contract import dataset_hash as training_data_hash
from bcc.deploy.int8 import AccuracyCheck, dataset_images, quantize_int8
from bcc.deploy.model_card import ModelCard, read_metadata
from bcc.deploy.onnx_export import export_onnx
from bcc.deploy.onnx_model import ExportError
from bcc.deploy.scorers import OnnxScorer
from bcc.explanation.gradcam import postprocess, raw_cams
from bcc.models.checkpoint import load_network
from tests.helpers.checkpoints import make_net, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def exported(ckpt, tmp_path_factory) -> Path:
    """The fp32 export through the CLI, with a thresholds.json beside the checkpoint (as eval writes it)."""

    d = tmp_path_factory.mktemp("export")
    model = d / "best.ckpt"
    shutil.copy(ckpt, model)
    shutil.copytree(ckpt.parent / ".hydra", d / ".hydra")  # dataset and fold of the run
    (d / "thresholds.json").write_text(json.dumps({"bcc": 0.42, "patterns": {"AT": 0.6}, "uncertainty_band": 0.05,
                                                   "source": "make eval"}))
    assert main([f"checkpoint={model}", "format=onnx"]) == 0
    return d / "best.onnx"


def _images(data_dir: Path, size: int, n: int) -> np.ndarray:

    return dataset_images(data_dir / "synthetic-smoke", size, n=n)


def _sess(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_onnx_equals_torch_with_dynamic_batch(exported, ckpt, data_dir):
    """Logits and the 8 raw Grad-CAM maps equal torch's (``raw_cams``) within 1e-4 at batch sizes never
    seen at export time."""
    net = load_network(ckpt, channels_last=False)
    sess = _sess(exported)
    assert [i.name for i in sess.get_inputs()] == ["image"]
    assert [o.name for o in sess.get_outputs()] == ["logits", "cams"]
    assert isinstance(sess.get_inputs()[0].shape[0], str), "batch axis must be dynamic"
    assert sess.get_inputs()[0].shape[1:] == [3, net.image_size, net.image_size]
    assert sess.get_outputs()[1].shape[1:] == [8, 1, 1]  # MobileNetV2 at 32 px: a 1 x 1 feature map
    images = _images(data_dir, net.image_size, 13)
    for n in (1, 4, 13):
        logits, cams = sess.run(["logits", "cams"], {"image": images[:n]})
        with torch.inference_mode():
            want = net(torch.from_numpy(images[:n])).numpy()
        want_cams, _ = raw_cams(net, torch.from_numpy(images[:n]))
        assert logits.shape == (n, len(OUTPUTS)) and cams.shape == (n, len(OUTPUTS), 1, 1)
        assert np.abs(logits - want).max() <= 1e-4
        assert np.abs(cams - want_cams.numpy()).max() <= 1e-4
        assert np.abs(cams).max() > 1e-3, "all-zero maps would make the comparison vacuous"


def _random_checkpoint(path: Path, name: str = "mobilenet", timm_name: str | None = None, size: int = 96) -> Path:
    """A random network written as bcc.train writes it, heads scaled so that the 8 maps differ visibly
    while the logits stay within the export's 1e-4 check (the smoke checkpoint's 32 px give 1 x 1 maps,
    which post-process to nothing)."""
    net = make_net(name, timm_name, size)
    with torch.no_grad():
        for head in net.heads.values():
            head.weight.mul_(0.2)
    return save_checkpoint(net, path, size, timm_name)


@pytest.fixture(scope="module")
def explained(tmp_path_factory) -> Path:
    """A random MobileNetV2 at 96 px (3 x 3 maps) exported through the CLI."""
    ck = _random_checkpoint(tmp_path_factory.mktemp("explained") / "best.ckpt")
    assert main([f"checkpoint={ck}", "format=onnx"]) == 0
    return ck.with_suffix(".onnx")


def test_maps_in_the_graph_equal_torch_after_post_processing(explained):
    net = load_network(explained.with_suffix(".ckpt"), channels_last=False)
    x = np.random.default_rng(5).random((3, 3, 96, 96), dtype=np.float32)
    cams = torch.from_numpy(_sess(explained).run(["cams"], {"image": x})[0])
    want, _ = raw_cams(net, torch.from_numpy(x))
    assert cams.shape == (3, 8, 3, 3) and (cams - want).abs().max() <= 1e-4
    maps, want_maps = postprocess(cams, (120, 80)), postprocess(want, (120, 80))
    assert (maps - want_maps).abs().max() <= 1e-4
    per_output = want_maps.transpose(0, 1).flatten(1)
    assert min((per_output[i] - per_output[j]).abs().max() for i in range(8) for j in range(i)) > 1e-2


@pytest.fixture(scope="module")
def convnext_ckpt(tmp_path_factory) -> Path:
    """A random ConvNeXt (atto: same head as convnext_tiny) at 64 px, written as bcc.train writes it."""
    return _random_checkpoint(tmp_path_factory.mktemp("convnext") / "c.ckpt", "convnext", "convnext_atto", 64)


def test_convnext_maps_in_closed_form_equal_the_backward_pass(convnext_ckpt):
    """ConvNeXt's LayerNorm after pooling: the graph's closed-form Jacobian gives the maps torch gets by a
    backward pass, within 1e-4, raw and post-processed."""
    model = export_onnx(convnext_ckpt, verbose=False)
    maps = json.loads(read_metadata(model)["maps"])
    assert maps["output"] == "cams" and maps["form"] == "layernorm" and maps["shape"] == ["batch", 8, 2, 2]
    net = load_network(convnext_ckpt, channels_last=False)
    x = np.random.default_rng(4).random((5, 3, 64, 64), dtype=np.float32)
    cams = torch.from_numpy(_sess(model).run(["cams"], {"image": x})[0])
    want, _ = raw_cams(net, torch.from_numpy(x))
    assert (cams - want).abs().max() <= 1e-4
    assert (postprocess(cams, (90, 70)) - postprocess(want, (90, 70))).abs().max() <= 1e-4
    per_output = want.transpose(0, 1).flatten(1)
    assert min((per_output[i] - per_output[j]).abs().max() for i in range(8) for j in range(i)) > 1e-3


def test_metadata_embedded(exported, ckpt, data_dir):


    model = onnx.load(str(exported))
    props = {p.key: p.value for p in model.metadata_props}
    meta = read_metadata(exported)
    assert set(meta) >= {"backbone", "timm_name", "input_size", "normalisation", "outputs", "thresholds",
                         "training_data_hash", "source_checkpoint", "quantization"}
    assert all(k.startswith("bcc.") for k in props)
    net = load_network(ckpt)
    assert meta["backbone"] == "mobilenet" and meta["timm_name"] == "mobilenetv2_100"
    assert int(meta["input_size"]) == net.image_size == 32
    norm = json.loads(meta["normalisation"])
    assert norm["mean"] == pytest.approx(net.mean.flatten().tolist()) and norm["std"] == pytest.approx(
        net.std.flatten().tolist())
    assert json.loads(meta["outputs"]) == list(OUTPUTS) and json.loads(meta["codes"]) == list(CODES)
    th = json.loads(meta["thresholds"])
    assert th["bcc"] == 0.42 and th["uncertainty_band"] == 0.05 and th["patterns"]["AT"] == 0.6
    assert meta["source_checkpoint"] == str(exported.with_suffix(".ckpt").resolve())
    assert meta["training_data_hash"].startswith("sha256:") and len(meta["training_data_hash"]) == 71
    maps = json.loads(meta["maps"])
    assert maps["output"] == "cams" and maps["form"] == "linear" and maps["shape"] == ["batch", 8, 1, 1]
    assert 0 <= maps["max_abs_diff_torch"] <= 1e-4 and "postprocess" in maps["postprocess"]
    card = ModelCard.read(exported)  # the typed card every reader uses, and what it writes reads back the same
    assert card.preprocess == net.preprocess and card.input_size == 32 and card.thresholds == th
    assert card.mean == pytest.approx(tuple(norm["mean"])) and card.std == pytest.approx(tuple(norm["std"]))
    assert ModelCard.from_metadata(card.metadata(), "again") == card


def test_a_malformed_card_entry_is_refused_by_its_key(exported, tmp_path):
    from bcc.models.checkpoint import CheckpointError

    meta = read_metadata(exported)
    for key, value, said in (("maps", "{", r"bcc\.maps metadata is not valid JSON"),
                             ("preprocess", '{"resize": "zoom"}', r"resize='zoom'"),
                             ("trained_outputs", '["bcc", "XX"]', r"bcc\.trained_outputs .* not a list of outputs"),
                             ("input_size", "-5", r"bcc\.input_size='-5' is not an input side")):
        with pytest.raises(CheckpointError, match=said):
            ModelCard.from_metadata({**meta, key: value}, exported)


def test_training_data_hash_tracks_the_data(data_dir, tmp_path):

    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(data_dir / "synthetic-smoke", a, ignore=shutil.ignore_patterns(".cache"))
    shutil.copytree(a, b)
    assert training_data_hash(a) == training_data_hash(b) != "unknown"
    img = b / pd.read_csv(b / "images.csv")["image"].iloc[7]
    raw = bytearray(img.read_bytes())
    raw[-20] ^= 0xFF  # one byte of one image
    img.write_bytes(bytes(raw))
    assert training_data_hash(a) != training_data_hash(b)
    assert training_data_hash(None) == "unknown" and training_data_hash(tmp_path) == "unknown"


def test_predict_on_the_onnx_model(exported, ckpt, data_dir, tmp_path):
    """Scores from ONNX Runtime equal torch's; thresholds come from the ONNX metadata."""
    images = data_dir / "synthetic-smoke" / "images"
    sub = tmp_path / "in"
    sub.mkdir()
    for p in sorted(images.glob("*.png"))[:8]:
        shutil.copy(p, sub / p.name)
    common = [f"input={sub}", "progress=false", "threads=1"]
    assert predict_main([f"checkpoint={exported}", *common, f"output={tmp_path / 'onnx'}"]) == 0
    assert predict_main([f"checkpoint={ckpt}", *common, f"output={tmp_path / 'torch'}", "threshold=0.42", "band=0.05",
                         "pattern_thresholds.AT=0.6", "report=false"]) == 0
    o = pd.read_csv(tmp_path / "onnx" / "triage.csv").set_index("image")
    t = pd.read_csv(tmp_path / "torch" / "triage.csv").set_index("image").loc[o.index]
    assert len(o) == 8 and (o.status == "ok").all()
    for col in ["p_bcc", *[f"p_{c}" for c in CODES]]:
        np.testing.assert_allclose(o[col], t[col], atol=2e-4)
    # same thresholds (the ONNX model's metadata vs the same values given on the command line)
    assert (o.diagnosis_verdict == t.diagnosis_verdict).all() and (o.review == t.review).all()
    html = (tmp_path / "onnx" / "report.html").read_text()
    assert "ONNX Runtime, best.onnx" in html and "Grad-CAM from the ONNX model&#39;s own maps" in html


def test_onnx_maps_equal_the_checkpoints_without_torch(explained, data_dir, tmp_path, monkeypatch):
    """bcc.predict on the exported model gives the checkpoint's maps (the raw maps the page draws, maps.npy)
    from the model's own output, with neither torch's network nor the source checkpoint (both made
    unusable here)."""
    src = tmp_path / "in"
    src.mkdir()
    for p in sorted((data_dir / "synthetic-smoke" / "images").glob("*.png"))[:4]:
        shutil.copy(p, src / p.name)
    common = [f"input={src}", "progress=false", "threads=1"]
    assert predict_main([f"checkpoint={explained.with_suffix('.ckpt')}", *common, f"output={tmp_path / 'torch'}"]) == 0

    def no_torch(*args, **kwargs):
        raise AssertionError("the torch network was used")

    monkeypatch.setattr("bcc.deploy.scorers.load_network", no_torch)
    monkeypatch.setattr("bcc.deploy.scorers.raw_cams", no_torch)
    model = tmp_path / "alone" / "model.onnx"
    model.parent.mkdir()
    shutil.copy(explained, model)
    explained.with_suffix(".ckpt").rename(tmp_path / "moved.ckpt")
    try:
        assert predict_main([f"checkpoint={model}", *common, f"output={tmp_path / 'onnx'}"]) == 0
    finally:
        (tmp_path / "moved.ckpt").rename(explained.with_suffix(".ckpt"))
    html = (tmp_path / "onnx" / "report.html").read_text()
    assert "Grad-CAM from the ONNX model&#39;s own maps (model.onnx" in html
    assert html.count('aria-label="Grad-CAM ') == 4 * 8  # eight canvases a lesion, drawn by the page
    got, want = np.load(tmp_path / "onnx" / "maps.npy"), np.load(tmp_path / "torch" / "maps.npy")
    assert got.shape == want.shape == (4, 8, *want.shape[2:])
    np.testing.assert_allclose(got, want, atol=1e-4)
    sw, at = OUTPUTS.index("SW"), OUTPUTS.index("AT")
    assert np.abs(want[:, sw] - want[:, at]).mean() > 1e-3, "maps of different outputs must differ"


def test_explain_on_the_onnx_model(explained, tmp_path, data_dir):
    """bcc.explain takes the exported model too: its raw maps equal the checkpoint's within 1e-4."""
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(min((data_dir / "synthetic-smoke" / "images").glob("*.png")), src / "lesion.png")
    for model, out in ((explained, "onnx"), (explained.with_suffix(".ckpt"), "torch")):
        assert explain_main([f"checkpoint={model}", f"input={src}", f"output={tmp_path / out}", "save_raw=true"]) == 0
    onnx_maps, torch_maps = (np.load(tmp_path / d / "lesion.png_maps.npy") for d in ("onnx", "torch"))
    assert onnx_maps.shape == (8, 64, 64) and np.abs(onnx_maps - torch_maps).max() <= 1e-4
    assert np.abs(torch_maps[0] - torch_maps[1]).max() > 1e-2


@pytest.fixture(scope="module")
def vit_export(tmp_path_factory) -> Path:
    """A random ViT (tiny, 32 px) exported: logits only, its maps need torch."""
    d = tmp_path_factory.mktemp("vit")
    ck = save_checkpoint(make_net("vit", "vit_tiny_patch16_224", 32), d / "best.ckpt", 32, "vit_tiny_patch16_224")
    return export_onnx(ck, verbose=False)


def test_vit_is_exported_without_maps_and_explained_by_torch(vit_export, data_dir, tmp_path):
    """No closed form for ViT: the metadata says why; predict computes the maps with the torch source
    checkpoint, and without it still writes the worklist, saying the maps are unavailable."""
    assert [o.name for o in _sess(vit_export).get_outputs()] == ["logits"]
    maps = json.loads(read_metadata(vit_export)["maps"])
    assert maps["output"] is None and "backward pass" in maps["why"] and "source_checkpoint" in maps["fallback"]
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(min((data_dir / "synthetic-smoke" / "images").glob("*.png")), src / "lesion.png")
    args = [f"checkpoint={vit_export}", f"input={src}", "progress=false", "threads=1"]
    assert predict_main([*args, f"output={tmp_path / 'a'}"]) == 0
    html = (tmp_path / "a" / "report.html").read_text()
    assert "Grad-CAM (torch) from" in html and "the ONNX model has no maps: ViT" in html
    assert 'aria-label="Grad-CAM diagnosis (BCC)"' in html and np.load(tmp_path / "a" / "maps.npy").shape[:2] == (1, 8)
    source = vit_export.with_suffix(".ckpt")
    source.rename(tmp_path / "moved.ckpt")
    try:
        assert predict_main([*args, f"output={tmp_path / 'b'}"]) == 0
    finally:
        (tmp_path / "moved.ckpt").rename(source)
    html = (tmp_path / "b" / "report.html").read_text()
    assert "Grad-CAM: unavailable: the ONNX model has no maps" in html and "Grad-CAM diagnosis" not in html
    assert pd.read_csv(tmp_path / "b" / "triage.csv").status.tolist() == ["ok"]
    assert explain_main([f"checkpoint={vit_export}", f"input={src}", f"output={tmp_path / 'c'}"]) == 2
    assert not (tmp_path / "c").exists()


def _fold0(data_dir: Path, size: int):
    """Test fold 0 of the smoke set with its labels, read here independently of bcc.export."""

    root = data_dir / "synthetic-smoke"
    t = (pd.read_csv(root / "images.csv").merge(pd.read_csv(root / "labels.csv"), on="image_id")
         .merge(pd.read_csv(root / "splits.csv"), on="image_id"))
    t = t[t.fold == 0]
    x = np.stack([np.asarray(Image.open(root / rel).convert("RGB").resize((size, size), Image.Resampling.BILINEAR,
                                                                           reducing_gap=2.0))
                  for rel in t.image]).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    return x, t.bcc.to_numpy()



def test_export_reads_a_dataset_outside_its_folder_only_when_allowed(ckpt, data_dir, tmp_path, capsys):
    """The dataset contract holds for export too: images reached through a link leaving the dataset are refused
    (hash, calibration, check), exit 2 with nothing written, unless allow_outside=true — or the checkpoint's
    own job had data.allow_outside=true."""
    ds, elsewhere = tmp_path / "ds", tmp_path / "elsewhere"
    shutil.copytree(data_dir / "synthetic-smoke", ds, ignore=shutil.ignore_patterns(".cache"))
    (ds / "images").rename(elsewhere)
    (ds / "images").symlink_to(elsewhere)
    with pytest.raises(BadInput, match=r"leads through a symbolic link .* outside the dataset directory"):
        training_data_hash(ds)
    assert training_data_hash(ds, allow_outside=True) == training_data_hash(data_dir / "synthetic-smoke")
    run = tmp_path / "run"
    shutil.copytree(ckpt.parent, run, ignore=shutil.ignore_patterns("*.onnx"))
    args = [f"checkpoint={run / 'best.ckpt'}", f"output={tmp_path / 'out' / 'm.onnx'}", "quantize=int8", "force=true",
            f"calibration={ds}", f"check_data={ds}", "check_fold=0"]
    for extra in ([], [f"data_root={ds}"]):
        assert main([*args[:2], *extra, *([] if extra else args[2:])]) == 2
        assert "outside the dataset directory" in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert main([*args, "allow_outside=true"]) == 0
    assert (tmp_path / "out" / "m.int8.onnx").is_file()
    assert "calibrated on" in read_metadata(tmp_path / "out" / "m.int8.onnx")["quantization"]
    shutil.rmtree(tmp_path / "out")
    config = run / ".hydra" / "config.yaml"
    text = config.read_text()
    assert "allow_outside: false" in text
    config.write_text(text.replace("allow_outside: false", "allow_outside: true"))
    assert main(args) == 0  # the training job read outside its dataset: its export may too


@pytest.mark.slow
def test_int8_export_and_its_accuracy_guard(exported, data_dir, capsys):
    """quantize=int8 with force=true keeps the model and records its check; the figures equal ours; without
    force the export refuses exactly when BCC accuracy moves by more than 1 point."""

    assert main([f"checkpoint={exported.with_suffix('.ckpt')}", "format=onnx", "quantize=int8", "force=true"]) == 0
    int8 = exported.with_suffix(".int8.onnx")
    assert int8.is_file() and int8.stat().st_size < 0.5 * exported.stat().st_size
    meta = read_metadata(int8)
    assert meta["quantization"].startswith("int8 static QDQ") and "calibrated on 64 training-fold images of" in meta["quantization"]
    assert {k: meta[k] for k in ("backbone", "input_size", "outputs", "thresholds", "training_data_hash")} == {
        k: read_metadata(exported)[k] for k in ("backbone", "input_size", "outputs", "thresholds",
                                                 "training_data_hash")}
    assert any(n.op_type == "QLinearConv" or n.op_type == "DequantizeLinear" for n in onnx.load(str(int8)).graph.node)

    x, y = _fold0(data_dir, int(meta["input_size"]))
    threshold = json.loads(meta["thresholds"])["bcc"]  # the operating point, 0.42 here
    acc = {}
    for name, path in (("fp32", exported), ("int8", int8)):
        sess = _sess(path)
        for n in (1, 5):  # dynamic batch
            assert sess.run(["logits"], {"image": x[:n]})[0].shape == (n, 8)
        p = 1 / (1 + np.exp(-sess.run(["logits"], {"image": x})[0][:, 0]))
        acc[name] = float(((p >= threshold) == y).mean())
    check = json.loads(meta["int8_check"])
    assert check["n"] == len(y) == 20 and check["threshold"] == threshold
    assert check["accuracy_fp32"] == pytest.approx(acc["fp32"]) and check["accuracy_int8"] == pytest.approx(acc["int8"])
    assert "test fold 0 of" in check["data"]

    # without force: refused iff |Δ| > 1 point, and then the previous int8 file is left alone
    before = int8.read_bytes()
    if abs(acc["int8"] - acc["fp32"]) > 0.01:
        assert main([f"checkpoint={exported.with_suffix('.ckpt')}", "format=onnx", "quantize=int8"]) == 1
        assert re.search(r"int8 changes BCC accuracy on test fold 0 .* not written", capsys.readouterr().err)
        assert int8.read_bytes() == before
    else:
        assert main([f"checkpoint={exported.with_suffix('.ckpt')}", "format=onnx", "quantize=int8"]) == 0
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".") and p.name != ".hydra"], \
        "temporary files left behind"


@pytest.mark.slow
def test_int8_model_keeps_its_maps_and_reports_them_against_fp32(explained, tmp_path, capsys):
    """The int8 copy of a model with maps still outputs them; the figure it records (mean |Δ|, correlations
    of the post-processed maps on the check images) equals one computed here from both models."""
    x = np.random.default_rng(6).random((12, 3, 96, 96), dtype=np.float32)
    y = np.zeros(12, int)
    out = quantize_int8(explained, tmp_path / "m.int8.onnx", calibration=x[:8],
                        check=AccuracyCheck(x, y, "given", 0.5, max_drop=1.0))
    assert [o.name for o in _sess(out).get_outputs()] == ["logits", "cams"]
    fig = json.loads(read_metadata(out)["maps"])["int8_vs_fp32"]
    a, b = (postprocess(torch.from_numpy(_sess(m).run(["cams"], {"image": x})[0]), (96, 96)).flatten(2)
            for m in (explained, out))
    assert fig["images"] == 12 and fig["maps"] == 96 and fig["data"] == "given"
    assert fig["mean_abs_diff"] == pytest.approx(float((a - b).abs().mean()), abs=1e-6)
    assert fig["max_abs_diff"] == pytest.approx(float((a - b).abs().max()), abs=1e-6)
    blank_a, blank_b = (a.amax(2) == 0).numpy(), (b.amax(2) == 0).numpy()
    both = ~blank_a & ~blank_b  # the correlation is defined where neither map is blank (constant)
    r = np.array([np.corrcoef(a[i, k], b[i, k])[0, 1] for i, k in zip(*np.nonzero(both), strict=True)])
    assert fig["median_correlation"] == pytest.approx(float(np.median(r)), abs=1e-5)
    assert fig["min_correlation"] == pytest.approx(float(r.min()), abs=1e-5)
    assert fig["blank_in_one_only"] == int((blank_a != blank_b).sum())
    assert 0 < fig["mean_abs_diff"] < 0.5 and -1 <= fig["min_correlation"] <= fig["median_correlation"] <= 1
    assert f"int8 Grad-CAM maps against fp32 on given: mean |Δ| {fig['mean_abs_diff']:.3f}" in capsys.readouterr().out
    assert f"int8 maps against fp32 on given: mean |Δ| {fig['mean_abs_diff']:.3f}" in OnnxScorer(out).maps_source


def test_guard_refuses_and_accepts_on_given_figures(exported, tmp_path):
    """The guard's rule on controlled labels: fp32's own decisions as labels ⇒ fp32 accuracy 1; int8 then
    loses exactly its number of flipped decisions. Labels flipped where int8 differs ⇒ the reverse."""

    rng = np.random.default_rng(0)
    x = rng.random((24, 3, 32, 32), dtype=np.float32)
    sess = _sess(exported)
    p32 = 1 / (1 + np.exp(-sess.run(["logits"], {"image": x})[0][:, 0]))
    y = (p32 >= 0.5).astype(int)
    out = tmp_path / "m.int8.onnx"
    quantize_int8(exported, out, calibration=x, check=AccuracyCheck(x, y, "given", 0.5, 1.0), verbose=False)
    c = json.loads(read_metadata(out)["int8_check"])
    assert c["accuracy_fp32"] == 1.0
    assert c["accuracy_int8"] == pytest.approx(c["decisions_agree"] / 24)
    flips = 24 - c["decisions_agree"]
    out.unlink()
    strict = AccuracyCheck(x, y, "given", 0.5, max_drop=(flips - 0.5) / 24 if flips else 0.0)
    if flips:
        with pytest.raises(ExportError, match=r"int8 changes BCC accuracy on given by -\d"):
            quantize_int8(exported, out, calibration=x, check=strict, verbose=False)
        assert not out.exists()
    loose = AccuracyCheck(x, y, "given", 0.5, max_drop=(flips + 0.5) / 24)
    assert quantize_int8(exported, out, calibration=x, check=loose, verbose=False) == out
