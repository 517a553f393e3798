"""Checkpoints the tests train or forge: a smoke checkpoint shared per session, random networks saved as
bcc.train would save them, and one carrying code."""
from __future__ import annotations

import copy
import functools
import os
from pathlib import Path

import torch

from bcc.models.network import MultitaskNet


@functools.cache
def trained_checkpoint(data_dir: Path, root: Path) -> Path:
    """A smoke checkpoint (stage 0, fold 0, as written by ``bcc.train``, Hydra config beside it), trained
    once per session and shared by the predict, export and explain tests."""
    from bcc.training.protocol import run

    torch.set_num_threads(1)
    out = root / "smoke-stage0"
    run(["experiment=smoke", f"paths.data_dir={data_dir}", f"paths.output_dir={out}", "stage=0", "logger=csv",
         "fold=0"])
    path = out / "mobilenet" / "fold0" / "stage0" / "best.ckpt"
    assert path.is_file()
    return path


@functools.cache
def _built(name: str, timm_name: str | None, image_size: int, seed: int) -> MultitaskNet:
    torch.manual_seed(seed)
    net = MultitaskNet.build(name, timm_name, image_size=image_size)
    for head in net.heads.values():
        torch.nn.init.normal_(head.weight, std=0.5)
    return net.eval()


def make_net(name: str = "mobilenet", timm_name: str | None = None, image_size: int = 96,
             seed: int = 0) -> MultitaskNet:
    """A random MultitaskNet whose heads are large enough for the 8 maps to differ visibly (a fresh copy
    of one built once: initialising a large timm model costs seconds)."""
    return copy.deepcopy(_built(name, timm_name, image_size, seed))


def save_checkpoint(net: MultitaskNet, path: Path, image_size: int, timm_name: str | None = None) -> Path:
    """The subset of a bcc.train (Lightning) checkpoint that load_network reads: net.* weights + hparams."""
    hp = {"network": {**net.spec, "image_size": image_size}, "stage": 3, "channels_last": True}
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    state["loss_fn.alpha"] = torch.ones(8)
    torch.save({"epoch": 0, "global_step": 0, "pytorch-lightning_version": "2.6.6", "state_dict": state,
                "hparams_name": "kwargs", "hyper_parameters": hp}, path)
    return path


class Evil:
    """Unpickling this would run a shell command (touch `marker`): a tampered checkpoint's payload."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def tampered_copy(ckpt: Path, out: Path, marker: Path) -> Path:
    """`ckpt` with pickled code added: loading it unsafely would create `marker`."""
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    raw["callbacks"] = Evil(marker)
    torch.save(raw, out)
    return out
