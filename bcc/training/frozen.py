"""A stage's frozen part run once per run, not once per epoch.

Stages 1 and 3 train only heads, stage 2 the last three blocks and the diagnosis head: everything before
the stage's *input level* (``MultitaskNet.input_level``: ``pooled`` or ``trunk``) is frozen and held in eval
mode, so its output for a given input picture never changes. Running it every epoch is most of an epoch's
cost (at 224 px, EfficientNet-Lite0's trunk is about three quarters of a forward pass, and a frozen stage
trains only what follows it). Here it runs once:

* **views** — for every image, view 0 (the picture as cached: validation, test) and ``views - 1`` augmented
  views drawn once per run from the training augmentation (``data.augment``), view *v* with the seed
  (seed, v) over the images in table order. Each epoch draws one view per training image, seeded by
  (seed, epoch), so a resumed run replays an uninterrupted one. The augmentation becomes a fixed sample of
  ``views - 1`` draws per image instead of a fresh draw per epoch: the price of the speed (``views=1``: no
  augmentation at all; ``data.frozen_views=0`` turns the whole mechanism off).
* **reuse** — activations are kept under a digest of the frozen weights, the decoded images and the views: in
  the process's memory and, for the trunk (the costly one) with ``data.disk_cache``, beside the dataset as
  ``.cache/frozen-trunk-<key>.npy`` (memory-mapped when read back). The trunk (the backbone before its last three blocks) is ImageNet's in stages 1–3 of every fold, so
  one computation serves stage 1 and stage 2 of every fold and the leave-one-source-out runs; stage 3 runs only
  its fold's tail (last blocks, norm, pooling) over it.
"""
from __future__ import annotations

import hashlib
import time
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import albumentations as A
import numpy as np
import torch
from tqdm.auto import tqdm

from bcc.core.errors import UsageError
from bcc.core.io import atomic_path
from bcc.models.network import MultitaskNet

_MEMORY: OrderedDict[str, torch.Tensor] = OrderedDict()
_STATS = {"computed": 0, "reused": 0, "seconds": 0.0}


def stats() -> dict[str, float]:
    """How often activations were computed and reused in this process, and the seconds spent computing them."""
    return dict(_STATS)


def _frozen_digest(net: MultitaskNet, level: str) -> str:
    """A digest of everything that makes the activations at `level`: the normalisation and the weights before it."""
    late = {id(t) for m in net.part("last_blocks") for t in (*m.parameters(), *m.buffers())}
    h = hashlib.sha256(f"{net.backbone_name}/{level}".encode())
    for t in (net.mean, net.std):
        h.update(t.detach().cpu().numpy().tobytes())
    for name, t in (*net.backbone.named_parameters(), *net.backbone.named_buffers()):
        if level == "pooled" or id(t) not in late:
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _key(net: MultitaskNet, level: str, images_key: str, augment: Mapping[str, A.BasicTransform], views: int,
         seed: int) -> str:
    h = hashlib.sha256(f"{_frozen_digest(net, level)}/{images_key}/{views}/{seed}".encode())
    h.update(repr([repr(t) for t in augment.values()]).encode())
    return h.hexdigest()[:20]


def view_batches(images: np.ndarray, augment: Mapping[str, A.BasicTransform], views: int, seed: int,
                 batch_size: int):
    """(view, first row, uint8 batch (B, H, W, 3)) for view 0 (as cached) and `views - 1` augmented views."""
    for v in range(views):
        transform = None
        if v > 0 and augment:
            transform = A.Compose(list(augment.values()), seed=seed)
            transform.set_random_seed(seed * 1_000_003 + 7919 * v)
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            if transform is not None:
                batch = np.stack([transform(image=img)["image"] for img in batch])
            yield v, start, batch


def _budget(n: int, views: int, shape: torch.Size, max_gb: float, level: str) -> None:
    need = n * views * int(np.prod(shape)) * 4 / 1e9
    if need > max_gb:
        raise UsageError(f"data.frozen_views={views}: the {level} activations of {n} images would take {need:.1f} GB "
                         f"(data.frozen_max_gb={max_gb}); lower data.frozen_views or data.image_size, raise "
                         f"data.frozen_max_gb, or set data.frozen_views=0 to train on the images every epoch")


@torch.no_grad()
def _run(net: MultitaskNet, images: np.ndarray, level: str, augment: Mapping[str, A.BasicTransform], views: int,
         seed: int, batch_size: int, device: torch.device, max_gb: float, channels_last: bool) -> torch.Tensor:
    """(views, N, *shape) float32 activations at `level` (trunk or pooled), on the CPU."""
    was_training = net.training
    net.eval().to(device)
    out: torch.Tensor | None = None
    bar = tqdm(total=views * len(images), desc=f"frozen {level} ({views} view{'s' * (views > 1)})", unit="img",
               leave=False, mininterval=5)
    try:
        for v, start, batch in view_batches(images, augment, views, seed, batch_size):
            x = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).float().div_(255.0)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            a = net.encode(x, level).float().cpu()
            if out is None:
                _budget(len(images), views, a.shape[1:], max_gb, level)
                out = torch.empty((views, len(images), *a.shape[1:]), dtype=torch.float32)
            out[v, start:start + len(batch)] = a
            bar.update(len(batch))
    finally:
        bar.close()
        net.train(was_training)
    assert out is not None
    return out


@torch.no_grad()
def _tail(net: MultitaskNet, trunk: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """Pooled features from trunk activations (views, N, ...): only the network's tail runs."""
    was_training = net.training
    net.eval().to(device)
    try:
        flat = trunk.flatten(0, 1)
        pooled = [net.trunk_to_pooled(flat[i:i + batch_size].to(device)).float().cpu()
                  for i in range(0, len(flat), batch_size)]
    finally:
        net.train(was_training)
    return torch.cat(pooled).view(trunk.shape[0], trunk.shape[1], -1)


def activations(net: MultitaskNet, images: np.ndarray, level: str, augment: Mapping[str, A.BasicTransform] | None,
                views: int, seed: int, images_key: str, batch_size: int = 64, device: str | torch.device = "cpu",
                max_gb: float = 8.0, channels_last: bool = True, cache_dir: Path | None = None) -> torch.Tensor:
    """(views, N, *shape): `net`'s activations at `level` for every image of `images` (N, H, W, 3) uint8 and
    view (see the module docstring), from memory or `cache_dir` when the same frozen weights met the same
    images (`images_key`: what the decoded array depends on, ``bcc.data.cache.decode_digest``) before."""
    if level not in ("trunk", "pooled"):
        raise ValueError(f"level {level!r}: the frozen activations are taken at 'trunk' or 'pooled'")
    augment = dict(augment or {})
    device = torch.device(device)
    key = _key(net, level, images_key, augment, views, seed)
    if (found := _recall(key, level, cache_dir if level == "trunk" else None)) is not None:
        _STATS["reused"] += 1
        return found
    t0 = time.perf_counter()
    if level == "pooled":  # through the trunk, which stage 2 of every fold starts from
        trunk_key = _key(net, "trunk", images_key, augment, views, seed)
        if (trunk := _recall(trunk_key, "trunk", cache_dir)) is None:
            trunk = _run(net, images, "trunk", augment, views, seed, batch_size, device, max_gb, channels_last)
            _keep(trunk_key, "trunk", trunk, max_gb, cache_dir)
        result = _tail(net, trunk, batch_size, device)  # stage 3: only its fold's tail runs
    else:
        result = _run(net, images, level, augment, views, seed, batch_size, device, max_gb, channels_last)
    _keep(key, level, result, max_gb, None)  # pooled features: a minute from the trunk, not worth the disk
    _STATS["computed"] += 1
    _STATS["seconds"] += time.perf_counter() - t0
    return result


def _file(cache_dir: Path, level: str, key: str) -> Path:
    return cache_dir / f"frozen-{level}-{key}.npy"


def _recall(key: str, level: str, cache_dir: Path | None) -> torch.Tensor | None:
    """The activations under `key`: from this process's memory, else from `cache_dir` (memory-mapped)."""
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key]
    if cache_dir is not None and (path := _file(cache_dir, level, key)).is_file():
        try:
            array = np.load(path, mmap_mode="r")
        except (OSError, ValueError):
            return None  # a damaged file is computed afresh
        with warnings.catch_warnings():  # read-only on purpose: nothing writes into the activations
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            _MEMORY[key] = torch.from_numpy(array)
        return _MEMORY[key]
    return None


def _keep(key: str, level: str, value: torch.Tensor, max_gb: float, cache_dir: Path | None) -> None:
    """Keep `value` in memory (dropping the least recently used beyond `max_gb`) and, when asked, on disk."""
    if cache_dir is not None:
        try:
            with atomic_path(_file(cache_dir, level, key)) as tmp, open(tmp, "wb") as f:
                np.save(f, value.numpy())
        except OSError:
            pass  # a read-only dataset: this process's memory only
    _remember(key, value, max_gb)


def _remember(key: str, value: torch.Tensor, max_gb: float) -> None:
    """Keep `value`, dropping the least recently used activations beyond `max_gb` in all."""
    _MEMORY[key] = value
    _MEMORY.move_to_end(key)
    while len(_MEMORY) > 1 and sum(t.numel() * t.element_size() for t in _MEMORY.values()) > max_gb * 1e9:
        _MEMORY.popitem(last=False)


def forget() -> None:
    """Drop every memoised activation (tests; a long-lived process between datasets)."""
    _MEMORY.clear()
