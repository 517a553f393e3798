"""A network's inner activations over a dataset, computed once and reused: a frozen part never runs twice.

Stages 1 and 3 train only heads, stage 2 the last three blocks and the diagnosis head: everything before the
stage's *input level* (``MultitaskNet.input_level``: ``pooled`` or ``trunk``) is frozen and held in eval mode,
so its output for a given picture never changes. Running it every epoch is most of an epoch's cost (at 224 px
EfficientNet-Lite0's trunk is about three quarters of a forward pass). The evaluation's probes read the same
pooled features. Here they are computed once:

* **views** — for every image, view 0 (the picture as cached: validation, test, the probes) and ``views - 1``
  augmented views drawn once from the training augmentation (``data.augment``), view *v* seeded by (seed, v),
  over the images in table order. Training draws one view per image and epoch (``bcc.training.datamodule``):
  the augmentation becomes a fixed sample of ``views - 1`` draws per image instead of a fresh draw per epoch,
  the price of the speed (``data.frozen_views=1``: no augmentation; ``0``: the mechanism off).
* **reuse** — activations are keyed by a digest of the frozen weights and normalisation and of the decoded
  images (``bcc.data.cache.decode_digest``), then by the views. A request for view 0 alone is served by any
  entry of more views. They are kept in the process's memory and, for the trunk (the costly level), beside
  the dataset as ``.cache/frozen-trunk-<key>.npy`` (memory-mapped when read back). The trunk (the backbone
  before its last three blocks) is ImageNet's throughout stages 1–3, so one computation serves every stage,
  fold and leave-one-source-out run of a dataset; stage 3 and the probes run only their fold's tail (last
  blocks, norm, pooling) over it.
"""
from __future__ import annotations

import hashlib
import time
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import numpy as np
import torch
from tqdm.auto import tqdm

from bcc.core.errors import UsageError
from bcc.core.io import atomic_path
from bcc.models.network import MultitaskNet


@dataclass(frozen=True)
class Entry:
    """Activations (views, N, *shape) of one frozen network on one decoded dataset."""

    views: int
    augment: str  # digest of the augmentation and seed that drew views 1.. (irrelevant to view 0)
    value: torch.Tensor

    def serves(self, views: int, augment: str) -> bool:
        return self.views >= views and (views == 1 or self.augment == augment)


_MEMORY: OrderedDict[str, list[Entry]] = OrderedDict()
_STATS = {"computed": 0, "reused": 0, "seconds": 0.0}


def stats() -> dict[str, float]:
    """How often activations were computed and reused in this process, and the seconds spent computing them."""
    return dict(_STATS)


def forget() -> None:
    """Drop every activation kept in memory (tests; a long-lived process between datasets)."""
    _MEMORY.clear()


def _frozen_digest(net: MultitaskNet, level: str) -> str:
    """Everything before `level` that makes its activations: the normalisation and the weights and statistics."""
    late = {id(t) for m in net.part("last_blocks") for t in (*m.parameters(), *m.buffers())}
    h = hashlib.sha256(f"{net.backbone_name}/{level}".encode())
    for t in (net.mean, net.std):
        h.update(t.detach().cpu().numpy().tobytes())
    for name, t in (*net.backbone.named_parameters(), *net.backbone.named_buffers()):
        if level == "pooled" or id(t) not in late:
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _augment_digest(augment: Mapping[str, A.BasicTransform], seed: int) -> str:
    return hashlib.sha256(f"{seed}/{[repr(t) for t in augment.values()]}".encode()).hexdigest()[:12]


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
         seed: int, batch_size: int, device: torch.device, max_gb: float) -> torch.Tensor:
    """(views, N, *shape) float32 activations at `level`, on the CPU. (``no_grad``, not ``inference_mode``:
    stage 2 back-propagates through the tail from these tensors.)"""
    was_training = net.training
    net.eval().to(device)
    out: torch.Tensor | None = None
    bar = tqdm(total=views * len(images), desc=f"frozen {level} ({views} view{'s' * (views > 1)})", unit="img",
               leave=False, mininterval=10)
    try:
        for v, start, batch in view_batches(images, augment, views, seed, batch_size):
            x = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).float().div_(255.0)
            a = net.encode(x.contiguous(memory_format=torch.channels_last), level).float().cpu()
            if out is None:
                _budget(len(images), views, a.shape[1:], max_gb, level)
                out = torch.empty((views, len(images), *a.shape[1:]), dtype=torch.float32)
            out[v, start:start + len(batch)] = a
            bar.update(len(batch))
    finally:
        bar.close()
        net.train(was_training)
    if out is None:
        raise UsageError("no images to compute activations of")
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


def activations(net: MultitaskNet, images: np.ndarray, level: str, images_key: str,
                augment: Mapping[str, A.BasicTransform] | None = None, views: int = 1, seed: int = 0,
                batch_size: int = 64, device: str | torch.device = "cpu", max_gb: float = 8.0,
                cache_dir: Path | None = None) -> torch.Tensor:
    """(views, N, *shape): `net`'s activations at `level` (``trunk`` or ``pooled``) for every image of `images`
    (N, H, W, 3) uint8 and view (module docstring). `images_key` names what the decoded array depends on
    (``bcc.data.cache.decode_digest``); `cache_dir` keeps the trunk on disk between processes."""
    if level not in ("trunk", "pooled"):
        raise ValueError(f"level {level!r}: activations are taken at 'trunk' or 'pooled'")
    augment = dict(augment or {})
    aug = _augment_digest(augment, seed)
    device = torch.device(device)
    key = f"{_frozen_digest(net, level)[:20]}-{images_key}"
    if (found := _recall(key, level, views, aug, cache_dir if level == "trunk" else None)) is not None:
        _STATS["reused"] += 1
        return found
    t0 = time.perf_counter()
    if level == "pooled":  # through the trunk, which stage 2 of every fold starts from
        trunk_key = f"{_frozen_digest(net, 'trunk')[:20]}-{images_key}"
        if (trunk := _recall(trunk_key, "trunk", views, aug, cache_dir)) is None:
            trunk = _run(net, images, "trunk", augment, views, seed, batch_size, device, max_gb)
            _keep(trunk_key, "trunk", Entry(views, aug, trunk), max_gb, cache_dir)
        result = _tail(net, trunk, batch_size, device)  # stage 3 and the probes: only the fold's tail runs
        _keep(key, level, Entry(views, aug, result), max_gb, None)  # a minute from the trunk: not worth the disk
    else:
        result = _run(net, images, level, augment, views, seed, batch_size, device, max_gb)
        _keep(key, level, Entry(views, aug, result), max_gb, cache_dir)
    _STATS["computed"] += 1
    _STATS["seconds"] += time.perf_counter() - t0
    return result


def _file(cache_dir: Path, level: str, key: str, entry: Entry) -> Path:
    return cache_dir / f"frozen-{level}-{key}-{entry.augment}-v{entry.views}.npy"


def _recall(key: str, level: str, views: int, augment: str, cache_dir: Path | None) -> torch.Tensor | None:
    """The first `views` views under `key`: from this process's memory, else from `cache_dir` (memory-mapped)."""
    for entry in _MEMORY.get(key, []):
        if entry.serves(views, augment):
            _MEMORY.move_to_end(key)
            return entry.value[:views]
    if cache_dir is None:
        return None
    for path in sorted(cache_dir.glob(f"frozen-{level}-{key}-*-v*.npy")):
        _, aug, n = path.stem.rsplit("-", 2)  # frozen-<level>-<key>-<augment>-v<views>
        if not n[1:].isdigit() or not Entry(entry_views := int(n[1:]), aug, torch.empty(0)).serves(views, augment):
            continue
        try:
            array = np.load(path, mmap_mode="r")
        except (OSError, ValueError):
            continue  # a damaged file: computed afresh
        with warnings.catch_warnings():  # read-only on purpose: nothing writes into the activations
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            entry = Entry(entry_views, aug, torch.from_numpy(array))
        _MEMORY.setdefault(key, []).append(entry)
        return entry.value[:views]
    return None


def _keep(key: str, level: str, entry: Entry, max_gb: float, cache_dir: Path | None) -> None:
    """Keep `entry` in memory (dropping the least recently used beyond `max_gb`) and, when asked, on disk."""
    if cache_dir is not None:
        try:
            with atomic_path(_file(cache_dir, level, key, entry)) as tmp, open(tmp, "wb") as f:
                np.save(f, entry.value.numpy())
        except OSError:
            pass  # a read-only dataset: this process's memory only
    _MEMORY.setdefault(key, []).append(entry)
    _MEMORY.move_to_end(key)
    size = lambda: sum(e.value.numel() * e.value.element_size() for es in _MEMORY.values() for e in es)
    while len(_MEMORY) > 1 and size() > max_gb * 1e9:
        _MEMORY.popitem(last=False)
