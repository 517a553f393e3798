"""bcc.explanation / bcc.models.checkpoint: equality with pytorch-grad-cam's GradCAM per target, the CLI (every
input its own outputs, bad inputs skipped), safe loading. Refused command lines: tests/bad_inputs/cases_deploy.py."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from bcc.cli.explain import main
from bcc.core.patterns import OUTPUTS
from bcc.data.images import read_image
from bcc.explanation.batch import output_name
from bcc.explanation.gradcam import gradcam_maps, logits_from_pooled, reference_maps
from bcc.explanation.render import JET, heat_rgb, overlay
from bcc.models.checkpoint import CheckpointError, UnsafeCheckpointError, load_network
from tests.helpers.checkpoints import make_net, save_checkpoint

TOL = 1e-4


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(make_net(), tmp_path_factory.mktemp("ckpt") / "best.ckpt", image_size=96)


def _check_against_pytorch_grad_cam(name: str, timm_name: str | None, size: int) -> None:
    net = make_net(name, timm_name, size)
    net.requires_grad_(False)  # frozen backbone and heads: gradients must still reach the target layer
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    maps, logits = gradcam_maps(net, x)
    ref = reference_maps(net, x)
    assert maps.shape == (2, len(OUTPUTS), size, size) and ref.shape == maps.shape
    assert np.abs(maps.numpy() - ref).max() < TOL
    assert (ref.max(axis=(2, 3)) > 0.99).sum() >= 8, "degenerate (all-zero) maps would make the test vacuous"
    # the 8 targets give different maps, so a swapped output order could not pass
    per_output = maps.numpy().transpose(1, 0, 2, 3).reshape(len(OUTPUTS), -1)
    assert min(np.abs(per_output[i] - per_output[j]).max() for i in range(8) for j in range(i)) > 1e-2
    with torch.no_grad():
        assert torch.allclose(logits, net(x), atol=1e-4)


# Small members of each family: same module structure (hence the same code path and target layer) as
# the configured convnext_tiny / vit_base_patch16_224, built in a fraction of the time.
@pytest.mark.parametrize("name, timm_name, size", [
    ("mobilenet", None, 96),                # linear shortcut: one einsum with the head weights
    ("efficientnet_lite0", None, 96),       # the same family and shortcut, TensorFlow "same" padding
    ("convnext", "convnext_atto", 64),      # LayerNorm after pooling: batched backward through the head
    ("vit", "vit_tiny_patch16_224", 64),    # blocks[-1].norm1, prefix tokens dropped: batched backward
])
def test_maps_equal_pytorch_grad_cam_per_target(name, timm_name, size):
    _check_against_pytorch_grad_cam(name, timm_name, size)


@pytest.mark.slow
@pytest.mark.parametrize("name, size", [("convnext", 64), ("vit", 64)])
def test_configured_backbones_equal_pytorch_grad_cam(name, size):
    """The architectures the configs name (convnext_tiny, vit_base_patch16_224)."""
    _check_against_pytorch_grad_cam(name, None, size)


def test_gradcam_layer_is_a_setting_that_travels_with_the_checkpoint(tmp_path):
    """backbone.gradcam_layer moves the maps to another layer (MobileNetV2's stride-16 blocks.4: a 6 x 6 grid
    at 96 px instead of 3 x 3), equal to pytorch-grad-cam at that layer, and the checkpoint keeps it."""
    from hydra.utils import instantiate

    from bcc.core.errors import BadInput
    from bcc.explanation.gradcam import raw_cams
    from bcc.training.config import compose_config

    net = make_net()
    net.explain_at("blocks.4")
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    assert raw_cams(net, x)[0].shape[-2:] == (6, 6) and raw_cams(make_net(), x)[0].shape[-2:] == (3, 3)
    assert np.abs(gradcam_maps(net, x)[0].numpy() - reference_maps(net, x)).max() < TOL
    loaded = load_network(save_checkpoint(net, tmp_path / "best.ckpt", image_size=96))
    assert loaded.spec["gradcam_layer"] == "blocks.4" and raw_cams(loaded, x)[0].shape[-2:] == (6, 6)

    cfg, _ = compose_config(["backbone.gradcam_layer=blocks.4", "data.image_size=96"])
    assert instantiate(cfg.model.net).spec["gradcam_layer"] == "blocks.4"
    with pytest.raises(BadInput, match=r"backbone.gradcam_layer=blocks.40: .* no module 'blocks.40'"):
        net.explain_at("blocks.40")


def test_stage1_frozen_training_net_is_explained_in_eval_mode_and_restored():
    """A net as stage 1 leaves it (backbone frozen, heads trainable, train mode): maps as in eval mode."""
    net = make_net("convnext", "convnext_atto", image_size=64)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    expected, _ = gradcam_maps(net, x)
    net.set_trainable(["diagnosis_head", "negative_head", "patterns_head"])
    net.train()
    maps, _ = gradcam_maps(net, x)
    assert net.training and net.dropout.training  # mode restored
    assert not any(p.requires_grad for p in net.backbone.parameters())
    assert torch.allclose(maps, expected, atol=1e-6)
    assert all(p.grad is None for p in net.parameters()), "explaining must not accumulate parameter gradients"


def test_backward_paths_work_inside_no_grad():
    net = make_net("vit", "vit_tiny_patch16_224", image_size=64)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        maps, _ = gradcam_maps(net, x)
    assert np.abs(maps.numpy() - reference_maps(net, x)).max() < TOL


def test_mobilenet_channel_weights_are_the_head_weights():
    """With global average pooling + linear heads, d logits / d pooled = the stacked head weights."""
    net = make_net()
    net.eval()
    pooled = torch.randn(3, net.backbone.num_features)
    jac = torch.autograd.functional.jacobian(lambda p: logits_from_pooled(net, p), pooled)  # (N, 8, N, C)
    per_image = torch.stack([jac[i, :, i] for i in range(len(pooled))])  # (N, 8, C)
    assert torch.allclose(per_image, net.head_weights().detach().expand_as(per_image), atol=1e-6)


def test_maps_at_image_resolution(checkpoint):
    net = load_network(checkpoint)
    x = torch.rand(3, 96, 96)
    maps, _ = gradcam_maps(net, x[None], size=(120, 80))
    assert maps.shape == (1, 8, 120, 80)
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1
    peak = maps.amax(dim=(-2, -1))
    assert ((peak > 0.99) | (peak == 0)).all() and (peak > 0.99).any()  # min-max normalised at full size
    one, _ = gradcam_maps(net, x, size=(120, 80))  # a single (3, S, S) image, as read_image returns it
    assert torch.equal(one, maps)


def test_load_network_round_trip(checkpoint):
    net = load_network(checkpoint)
    ref = make_net()
    assert not net.training and net.image_size == 96
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(net(x), ref(x), atol=1e-4)
        assert net(x).shape == (2, len(OUTPUTS))


class _Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_refuses_checkpoint_with_pickled_code(tmp_path, checkpoint):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.ckpt"
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["callbacks"] = {"x": _Payload(marker)}
    torch.save(ckpt, evil)  # pickles _Payload: torch.load(weights_only=False) would run Path.touch
    with pytest.raises(UnsafeCheckpointError, match="refused to load"):
        load_network(evil)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="does not exist"):
        load_network(tmp_path / "missing.ckpt")


def test_overlay_is_matplotlibs_jet_blended_over_the_lesion():
    """The table lookup picks matplotlib's own colours (0 and 1 included) and blends them as the float formula."""
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.random(4000), [0.0, 1.0, 1 / 256, 255 / 256, -0.2, 1.3]]).reshape(1, -1)
    assert np.array_equal(heat_rgb(z), JET(np.clip(z, 0, 1))[..., :3].astype(np.float32))
    rgb = rng.integers(0, 256, (1, z.shape[1], 3), dtype=np.uint8)
    for alpha in (0.5, 0.3):
        want = np.clip((alpha * JET(np.clip(z, 0, 1))[..., :3] + (1 - alpha) * rgb / 255.0) * 255.0 + 0.5, 0, 255)
        got = overlay(rgb, z, alpha)
        assert got.dtype == np.uint8 and np.abs(got.astype(int) - want.astype(np.uint8)).max() <= 1


def test_cli_writes_overlays_and_raw_maps(tmp_path, checkpoint):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(src / "a.png")
    Image.fromarray(rng.integers(0, 255, (70, 50, 3), dtype=np.uint8)).save(src / "sub" / "b.jpg")
    out = tmp_path / "out"
    assert main([f"checkpoint={checkpoint}", f"input={src}", f"output={out}", "save_raw=true"]) == 0
    for name, rel, (h, w) in (("a.png", "a.png", (60, 80)), ("sub%2Fb.jpg", "sub/b.jpg", (70, 50))):
        raw = np.load(out / f"{name}_maps.npy")
        assert raw.shape == (8, h, w) and raw.dtype == np.float32
        assert raw.min() >= 0 and raw.max() <= 1
        x, _ = read_image(src / rel, 96)
        expected, _ = gradcam_maps(load_network(checkpoint), x[None], size=(h, w))
        assert np.abs(raw - expected[0].numpy()).max() < 1e-4  # float32 batched vs single: ~1e-5 on 1 thread
        for output in OUTPUTS:
            with Image.open(out / f"{name}_{output}.png") as im:
                assert im.size == (w, h) and im.mode == "RGB"
    table = pd.read_csv(out / "explanations.csv")
    assert list(table.columns) == ["image", "name", "status", "note", *[f"p_{o}" for o in OUTPUTS]]
    assert table[["image", "name", "status"]].values.tolist() == [["a.png", "a.png", "ok"],
                                                                  ["sub/b.jpg", "sub%2Fb.jpg", "ok"]]


def test_cli_skips_bad_inputs_and_keeps_every_input_apart(tmp_path, checkpoint, capsys):
    """One bad image does not stop the batch; lesion.jpg and lesion.png get their own overlays; a
    non-UTF-8 or formula-leading file name is named, escaped, and neutralised in explanations.csv."""
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(src / "lesion.png")
    Image.fromarray(rng.integers(0, 255, (50, 30, 3), dtype=np.uint8)).save(src / "lesion.jpg", quality=95)
    shutil.copy(src / "lesion.png", os.fsencode(src) + b"/l\xe9sion.png")
    shutil.copy(src / "lesion.png", src / "=cmd.png")
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)  # a PNG signature, then garbage
    (src / "notes.txt").write_text("referral letter")
    shutil.copy(src / "lesion.png", src / ".hidden.png")
    out = tmp_path / "out"
    assert main([f"checkpoint={checkpoint}", f"input={src}", f"output={out}", "save_raw=true", "batch_size=2"]) == 0
    printed = capsys.readouterr().out
    assert "skipped bad.png: corrupt PNG image" in printed and "explained 4 image(s)" in printed
    with open(out / "explanations.csv", newline="", encoding="utf-8") as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"lesion.png", "lesion.jpg", "l%E9sion.png", "'=cmd.png", "bad.png", "notes.txt"}
    assert rows["'=cmd.png"]["image"] == "'=cmd.png" and rows["l%E9sion.png"]["image"] == "l\\xe9sion.png"
    assert "shown escaped" in rows["l%E9sion.png"]["note"]
    assert [rows[n]["status"] for n in ("bad.png", "notes.txt")] == ["skipped", "skipped"]
    assert rows["notes.txt"]["note"] == "not an image (format not recognised)" and rows["bad.png"]["p_bcc"] == ""
    written = {p.name for p in out.iterdir()}
    for name in ("lesion.png", "lesion.jpg", "l%E9sion.png", "=cmd.png"):
        assert {f"{name}_{o}.png" for o in OUTPUTS} | {f"{name}_maps.npy"} <= written
    assert not [n for n in written if n.startswith(("bad.png", "notes.txt", ".hidden"))]
    assert np.load(out / "lesion.png_maps.npy").shape == (8, 40, 40)
    assert np.load(out / "lesion.jpg_maps.npy").shape == (8, 50, 30)  # not overwritten by lesion.png's
    np.testing.assert_allclose(np.load(out / "l%E9sion.png_maps.npy"), np.load(out / "lesion.png_maps.npy"), atol=1e-5)


def test_output_names_are_distinct_stable_and_portable(tmp_path):
    root = tmp_path
    rels = ["lesion.jpg", "lesion.png", "a/b.png", "a%2Fb.png", "a__b.png", "a_b.png", "sp ace.png", "lésion.png",
            "tab\there.png", 'q"<>:|?*.png', "back\\slash.png", "x" * 300 + ".png", "x" * 299 + "y.png"]
    paths = [root / r for r in rels] + [Path(os.fsdecode(os.fsencode(root) + b"/l\xe9sion.png"))]
    names = [output_name(p, root) for p in paths]
    assert len(set(names)) == len(names)
    assert names[:8] == ["lesion.jpg", "lesion.png", "a%2Fb.png", "a%252Fb.png", "a__b.png", "a_b.png", "sp ace.png",
                         "lésion.png"]
    assert names[8:11] == ["tab%09here.png", "q%22%3C%3E%3A%7C%3F%2A.png", "back%5Cslash.png"]
    assert names[-1] == "l%E9sion.png"
    assert [output_name(p, root) for p in paths] == names  # the same path always gets the same name
    for name in names:
        assert "/" not in name and len(f"{name}_maps.npy".encode()) <= 255
        name.encode("utf-8")  # every name is valid UTF-8
    assert names[11].endswith("~" + names[11][-12:]) and names[11] != names[12]


@pytest.mark.slow
def test_cli_as_typed(tmp_path, checkpoint):
    """``python -m bcc.explain`` in a fresh process, on a single image."""
    img = tmp_path / "lesion.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(img)
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "bcc.explain", f"checkpoint={checkpoint}", f"input={img}",
                          f"output={out}"], check=False, capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).parents[1], env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"lesion.png_{o}.png" for o in OUTPUTS)
    assert not list(out.glob("*.npy"))
