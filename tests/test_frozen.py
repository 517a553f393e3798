"""Stages with a frozen part train on its output computed once (bcc.models.activations): the network rejoins at
each level, the frozen part is untouched and costs no optimizer state, the activations are reused across
stages and folds, the predictions equal the network's on the pictures, and the views are drawn per epoch."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from bcc.core.errors import UsageError
from bcc.models import activations as frozen
from bcc.models.checkpoint import load_network, read_checkpoint
from bcc.models.network import LEVELS, MultitaskNet, input_level
from bcc.training.datamodule import ActivationDataset
from bcc.training.protocol import run
from tests.helpers.checkpoints import make_net

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name, timm_name, size", [
    ("mobilenet", None, 64), ("efficientnet_lite0", None, 64), ("convnext", "convnext_atto", 64),
    ("vit", "vit_tiny_patch16_224", 32),
])
def test_every_level_rejoins_the_forward_and_the_tail_is_the_last_blocks(name, timm_name, size):
    net = make_net(name, timm_name, size)
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = net(x)
        for level in LEVELS:
            assert torch.allclose(net.logits_from(level, net.encode(x, level)), whole, atol=1e-5), level
    # the tail is exactly the part stage 2 trains: gradients from the trunk's output reach the last blocks' parameters
    # and nothing else of the backbone
    trunk = net.encode(x, "trunk").detach()
    net.zero_grad()
    net.trunk_to_pooled(trunk).sum().backward()
    reached = {id(p) for p in net.backbone.parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    last = {id(p) for m in net.part("last_blocks") for p in m.parameters()}
    assert reached and reached <= last
    assert len(reached) >= 0.8 * len(last)  # (a few, e.g. a LayerNorm bias after a zero-initialised layer, may get 0)


def test_input_level_of_each_stage():
    assert input_level(["backbone", "diagnosis_head"]) == "image"
    assert input_level(["last_blocks", "diagnosis_head"]) == "trunk"
    assert input_level(["negative_head", "patterns_head"]) == "pooled"


def test_views_are_drawn_per_epoch_reproducibly_and_evaluation_sees_view_0():
    acts = torch.arange(3 * 50, dtype=torch.float32).view(3, 50, 1)
    rows = np.arange(50)
    labels = np.zeros((50, 8), np.float32)
    train = ActivationDataset(acts, "pooled", rows, labels, labels, draw_views=True)
    train.reseed(7)
    first = train.views.clone()
    train.reseed(8)
    assert not torch.equal(first, train.views) and set(train.views.tolist()) == {0, 1, 2}
    train.reseed(7)
    assert torch.equal(first, train.views)
    assert train[4]["pooled"].item() == acts[first[4], 4].item()
    val = ActivationDataset(acts, "pooled", rows, labels, labels, draw_views=False)
    val.reseed(7)
    assert [val[i]["pooled"].item() for i in range(3)] == [0.0, 1.0, 2.0]


@pytest.fixture
def lite_run(smoke_overrides, tmp_path):
    """A smoke fold through stages 1-3 of EfficientNet-Lite0 from its ImageNet weights, 2 views."""
    frozen.forget()
    overrides = [*smoke_overrides, "backbone=efficientnet_lite0", "stage=all", "data.frozen_views=2",
                 "stage.max_epochs=2", "logger=csv", "data.disk_cache=false"]
    before = frozen.stats()
    metrics = run(overrides)
    return tmp_path / "out" / "efficientnet_lite0" / "fold0", metrics, before, overrides


@pytest.mark.slow
def test_frozen_stages_train_on_activations_computed_once(lite_run, compose_cfg):
    job, metrics, before, overrides = lite_run
    assert sorted(metrics) == [1, 2, 3]  # ImageNet weights: no stage 0
    levels = {s: metrics[s]["frozen"]["level"] for s in metrics}
    assert levels == {1: "pooled", 2: "trunk", 3: "pooled"}
    assert metrics[2]["frozen"]["seconds"] == 0.0  # stage 2 reused the trunk stage 1 computed
    after = frozen.stats()
    assert after["computed"] - before["computed"] == 2 and after["reused"] - before["reused"] == 1
    for s in metrics:
        assert metrics[s]["images_per_second"] > 0 and metrics[s]["train_images"] > 0

    nets = {s: load_network(job / f"stage{s}" / "best.ckpt") for s in metrics}
    imagenet = MultitaskNet.build("efficientnet_lite0", pretrained=True, image_size=32)
    trunk_of = lambda net: {k: v for k, v in net.backbone.state_dict().items()
                            if k.split(".")[0] in ("conv_stem", "bn1") or k.startswith(("blocks.0", "blocks.1", "blocks.2",
                                                                                        "blocks.3", "blocks.4"))}
    late = lambda net: {k: v for k, v in net.backbone.state_dict().items() if k.startswith(("blocks.6", "conv_head"))}
    for s in metrics:  # the trunk stays ImageNet's in every stage, batch-norm statistics included
        assert all(torch.equal(v, trunk_of(imagenet)[k]) for k, v in trunk_of(nets[s]).items())
    assert all(torch.equal(v, late(imagenet)[k]) for k, v in late(nets[1]).items())
    assert not all(torch.equal(v, late(nets[1])[k]) for k, v in late(nets[2]).items())  # stage 2 trained them
    assert all(torch.equal(v, late(nets[2])[k]) for k, v in late(nets[3]).items())

    # a frozen part costs no optimizer state: stage 1 holds state for the diagnosis head's weight and bias only
    opt = read_checkpoint(job / "stage1" / "last.ckpt")["optimizer_states"][0]
    assert len(opt["state"]) == 2
    n_late = sum(1 for m in nets[2].part("last_blocks") for _ in m.parameters())
    assert len(read_checkpoint(job / "stage2" / "last.ckpt")["optimizer_states"][0]["state"]) == n_late + 2

    # what was trained on activations scores exactly as the network on the pictures
    cfg = compose_cfg([o for o in overrides if o != "stage=all"] + ["stage=2"])
    dm = instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    rows = dm.rows("test")
    x = torch.from_numpy(dm.images[rows]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        p = torch.sigmoid(nets[2](x)).numpy()
    preds = pd.read_csv(job / "stage2" / "predictions.csv", dtype={"image_id": str}).set_index("image_id")
    assert np.abs(preds.loc[dm.image_ids(rows), "p_bcc"].to_numpy() - p[:, 0]).max() < 1e-4
    summary = json.loads((job / "stage2" / "metrics.json").read_text())
    assert summary["frozen"] == {"level": "trunk", "views": 2, "seconds": 0.0}


@pytest.mark.slow
def test_max_epochs_zero_keeps_the_model_and_a_second_process_reads_the_trunk_from_disk(smoke_overrides, tmp_path):
    frozen.forget()
    common = [*smoke_overrides, "backbone=efficientnet_lite0", "data.frozen_views=2", "stage.max_epochs=1",
              "logger=csv"]
    run([*common, "stage=1"])
    frozen.forget()  # as a new process: memory empty, the trunk on disk beside the dataset
    m2 = run([*common, "stage=2", "stage.max_epochs=0"])[2]
    assert m2["fitted"] is False and m2["frozen"] == {"level": "trunk", "views": 2, "seconds": 0.0}
    assert frozen.stats()["reused"] >= 1
    job = tmp_path / "out" / "efficientnet_lite0" / "fold0"
    p1 = pd.read_csv(job / "stage1" / "predictions.csv")
    p2 = pd.read_csv(job / "stage2" / "predictions.csv")
    assert np.allclose(p1["p_bcc"], p2["p_bcc"], atol=1e-6)


def test_activations_beyond_the_budget_are_refused(smoke_overrides, tmp_path):
    frozen.forget()
    with pytest.raises(UsageError, match=r"data.frozen_views=2: the trunk activations of 100 images.*data.frozen_max_gb"):
        run([*smoke_overrides, "backbone=efficientnet_lite0", "stage=1", "data.frozen_views=2",
             "data.frozen_max_gb=1e-6", "logger=csv", "data.disk_cache=false"])


def test_frozen_bn_statistics_keep_the_running_statistics_and_train_scale_and_shift():
    net = make_net("efficientnet_lite0", None, 64)
    bn = net.backbone.bn2  # inside the last blocks (conv_head's BatchNorm)
    for stats, changes in (("frozen", False), ("train", True)):
        before = bn.running_mean.clone()
        net.set_trainable(["last_blocks", "diagnosis_head"], bn_statistics=stats)
        net.train()
        net(torch.rand(4, 3, 64, 64))
        assert bn.weight.requires_grad and bn.bias.requires_grad
        assert (not torch.equal(before, bn.running_mean)) is changes, stats
    with pytest.raises(Exception, match="bn_statistics='batch'"):
        net.set_trainable(["last_blocks"], bn_statistics="batch")
