"""The multitask network, its stages' freezing, and backbone weights (fast: no training)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from bcc.core.patterns import HEADS, OUTPUTS, clinical_rule, rule_verdict
from bcc.models.backbones import BackboneWeightsError, create_backbone, last_blocks
from bcc.models.network import MultitaskNet
from bcc.models.serialization import UnsafeCheckpointError
from tests.helpers.checkpoints import Evil

STAGE_TRAINABLE = {  # conf/stage/<s>.yaml
    0: ["backbone", "diagnosis_head", "negative_head", "patterns_head"],
    1: ["diagnosis_head", "negative_head", "patterns_head"],
    2: ["last_blocks", "diagnosis_head", "negative_head", "patterns_head"],
    3: ["negative_head", "patterns_head"],
}


@pytest.fixture(scope="module")
def net() -> MultitaskNet:
    torch.manual_seed(0)
    return MultitaskNet.build("mobilenet", dropout=0.3)


def test_outputs_in_fixed_order(net):
    net.eval()
    x = torch.rand(3, 3, 32, 32)
    logits = net(x)
    assert logits.shape == (3, len(OUTPUTS))
    f = net.features(x)
    expect = torch.cat([net.heads["diagnosis"](f), net.heads["negative"](f), net.heads["patterns"](f)], 1)
    assert torch.allclose(logits, expect, atol=1e-6)  # bcc, PN, U..AT
    assert [o for h in HEADS.values() for o in h] == list(OUTPUTS)
    w = net.head_weights()
    assert torch.allclose(f @ w.T + net.head_bias(), logits, atol=1e-5)  # the one accessor = the heads


def test_rule_verdict_follows_the_clinical_rule():
    rng = np.random.default_rng(0)
    probs = rng.random((50, 8))
    assert (rule_verdict(probs) == clinical_rule((probs[:, 1:] >= 0.5).astype(int))).all()


def _trainable_names(net) -> set[str]:
    names = {".".join(n.split(".")[:2]) if n.startswith("heads.") else n.split(".")[0]
             for n, p in net.named_parameters() if p.requires_grad}
    return {f"{n[len('heads.'):]}_head" if n.startswith("heads.") else n for n in names}


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_each_stage_trains_only_its_parts(net, stage):
    net.set_trainable(STAGE_TRAINABLE[stage])
    net.train()
    heads = {"diagnosis_head", "negative_head", "patterns_head"}
    expect = {0: heads | {"backbone"}, 1: heads, 2: heads | {"backbone"}, 3: heads - {"diagnosis_head"}}[stage]
    assert _trainable_names(net) == expect
    late = {id(p) for m in last_blocks("mobilenet", net.backbone) for p in m.parameters()}
    backbone_grads = {id(p) for p in net.backbone.parameters() if p.requires_grad}
    if stage == 2:
        assert backbone_grads == late  # exactly the last three blocks (+ final conv)
    bns = [m for m in net.backbone.modules() if isinstance(m, _BatchNorm)]
    trainable_bn = [m for m in bns if m.weight.requires_grad]
    assert all(m.training for m in trainable_bn)
    assert not any(m.training for m in bns if not m.weight.requires_grad)  # frozen BN keeps its statistics
    assert net.dropout.training


def test_frozen_batchnorm_statistics_do_not_move(net):
    net.set_trainable(STAGE_TRAINABLE[1])
    net.train()
    before = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    net(torch.rand(4, 3, 32, 32) * 3)
    after = net.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_last_blocks_are_defined_for_every_backbone():
    m = create_backbone("mobilenet")
    blocks = last_blocks("mobilenet", m)
    assert blocks[:3] == [m.blocks[5][1], m.blocks[5][2], m.blocks[6][0]] and blocks[3] is m.conv_head
    v = create_backbone("vit", image_size=32)
    assert last_blocks("vit", v)[:3] == list(v.blocks)[-3:]
    c = create_backbone("convnext")
    assert last_blocks("convnext", c)[:3] == list(c.stages[3].blocks)


def test_weights_from_a_local_file(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(1)
    reference = timm.create_model("mobilenetv2_100", num_classes=1000)  # an "ImageNet" checkpoint, classifier too
    path = tmp_path / "mobilenetv2_100.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    loaded = create_backbone("mobilenet", weights=path)
    ref = reference.state_dict()
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, ref[k]), k
    pth = tmp_path / "w.pth"
    torch.save(reference.state_dict(), pth)
    assert torch.equal(create_backbone("mobilenet", weights=pth).conv_stem.weight, reference.conv_stem.weight)


def test_missing_weights_fail_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    import socket

    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise OSError("no network in this test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(BackboneWeightsError, match=r"backbone\.weights="):
        create_backbone("mobilenet", pretrained=True)
    assert calls == []  # offline: the hub is never tried (timm would retry it for ~46 s)
    with pytest.raises(BackboneWeightsError, match="no such file"):
        create_backbone("mobilenet", weights=tmp_path / "nope.safetensors")


def test_backbone_weights_carrying_pickled_code_are_refused(tmp_path):
    marker = tmp_path / "ran"
    bad = tmp_path / "imagenet.pth"
    torch.save({"conv_stem.weight": torch.zeros(1), "payload": Evil(marker)}, bad)
    with pytest.raises(UnsafeCheckpointError, match=r"backbone\.weights.*refused to load"):
        create_backbone("mobilenet", weights=bad)
    assert not marker.exists()
