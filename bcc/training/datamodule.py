"""LightningDataModule over the dataset contract: images.csv + labels.csv + splits.csv.

Splits for ``fold=k``: the images of fold k are the **test** set (or, with ``test_source``, every image of
that source: leave one source out); the other folds form the training pool,
from which a **validation** slice (``val_fraction``, default 15 %) is drawn, multilabel-stratified on the
seven codes and ``bcc`` (iterative stratification, seed ``split_seed + k``), so validation never sees the
test fold and has every code's prevalence. Checkpoint selection uses validation only.

Images are decoded and made into the network's view once (``bcc.data.cache``; ``resize`` and ``colour``
are ``bcc.data.images.Preprocess``'s: the network records them, so triage repeats them) and served as
uint8 (C, H, W) tensors; the model scales them to [0, 1]. ``sampler="balanced"`` draws each epoch's
training images with replacement, weighting an image by its class frequency to the power
``-sampler_power`` (1: BCC and non-BCC equally often; 0.5: square-root balancing) — the other answer to a
rare class beside the loss's ``alpha``. Training transforms: ``augment``, albumentations transforms by name
that Hydra builds from ``conf/data/synthetic.yaml`` (rotation, random perspective and Gaussian blur as in the
paper, §2.4, plus flips and a mild colour jitter), composed in that order on the cached uint8 image.
Evaluation transforms are the identity on the cached resize (deterministic). With the cache, a batch
costs about a millisecond per image here, so ``num_workers=0`` (the main process) is the default on a
2-core machine; with workers they are persistent.

``serve_frozen`` switches a stage with a frozen part to its activations (``bcc.models.activations``,
``frozen_views`` views per image computed once): the items then carry ``trunk`` or ``pooled`` instead of
``image``, and each epoch draws one view per training image.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import albumentations as A
import lightning as L
import numpy as np
import pandas as pd
import torch
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit
from torch.utils.data import DataLoader, Dataset, Sampler

from bcc.core.errors import UsageError
from bcc.core.patterns import CODES, OUTPUTS
from bcc.data.consensus import ensure_labels
from bcc.data.folds import ensure_splits, strata
from bcc.data.images import Preprocess
from bcc.data.synthetic import generate
from bcc.data.table import read_table, table_images
from bcc.models import activations
from bcc.models.network import MultitaskNet

SAMPLERS = ("shuffle", "balanced")



class LesionDataset(Dataset):
    """Items: ``image`` uint8 (3, H, W), ``label`` (8,) 0/1/NaN for metrics, ``target`` (8,) for the loss."""

    def __init__(self, images: np.ndarray, rows: np.ndarray, labels: np.ndarray, targets: np.ndarray,
                 transform: A.Compose | None = None):
        self.images, self.rows, self.transform = images, rows, transform
        self.labels = torch.as_tensor(labels, dtype=torch.float32)
        self.targets = torch.as_tensor(targets, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.rows)

    def reseed(self, seed: int) -> None:
        if self.transform is not None:
            self.transform.set_random_seed(seed)

    def __getitem__(self, i: int) -> dict[str, Any]:
        img = self.images[self.rows[i]]
        if self.transform is not None:
            img = self.transform(image=img)["image"]
        return {"image": torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1),
                "label": self.labels[i], "target": self.targets[i], "index": int(self.rows[i])}


class ActivationDataset(Dataset):
    """Items: ``<level>`` the frozen part's output for one view of the image (``bcc.models.activations``), ``label``,
    ``target``, ``index``. View 0 (the picture as is) unless `draw_views`: then :meth:`reseed` draws one view
    per item for the epoch."""

    def __init__(self, activations: torch.Tensor, level: str, rows: np.ndarray, labels: np.ndarray,
                 targets: np.ndarray, draw_views: bool):
        self.activations, self.level, self.rows, self.draw_views = activations, level, rows, draw_views
        self.labels = torch.as_tensor(labels, dtype=torch.float32)
        self.targets = torch.as_tensor(targets, dtype=torch.float32)
        self.views = torch.zeros(len(rows), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.rows)

    def reseed(self, seed: int) -> None:
        if self.draw_views:
            g = torch.Generator().manual_seed(seed)
            self.views = torch.randint(self.activations.shape[0], (len(self.rows),), generator=g)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {self.level: self.activations[self.views[i], self.rows[i]], "label": self.labels[i],
                "target": self.targets[i], "index": int(self.rows[i])}


class EpochSeededSampler(Sampler[int]):
    """Shuffles (or, with `weights`, draws with replacement) with a generator seeded by (seed, epoch) and reseeds the augmentation and torch's global
    RNG (dropout) when an epoch's iteration starts, so each epoch depends only on (seed, epoch) and the
    weights it starts from: a run resumed from ``last.ckpt`` replays what an uninterrupted run does.
    Lightning calls ``set_epoch`` before every epoch; ``epoch`` at construction covers a resumed fit,
    whose first iterator is created before that call."""

    def __init__(self, dataset: LesionDataset | ActivationDataset, seed: int, epoch: int = 0,
                 weights: np.ndarray | None = None):
        self.dataset, self.seed, self.epoch = dataset, int(seed), int(epoch)
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self):
        s = self.seed * 1_000_003 + self.epoch
        torch.manual_seed(s)
        self.dataset.reseed(s)
        g = torch.Generator().manual_seed(s)
        if self.weights is None:
            yield from torch.randperm(len(self.dataset), generator=g).tolist()
        else:
            yield from torch.multinomial(self.weights, len(self.dataset), replacement=True, generator=g).tolist()


def balancing_weights(y: np.ndarray, power: float) -> np.ndarray:
    """Per image: its class frequency (BCC or not; an unknown label counts as its own class) to the power
    -`power`, so each class is drawn in proportion to frequency^(1 - power)."""
    cls = np.where(np.isfinite(y), y, -1.0)
    _, inverse, counts = np.unique(cls, return_inverse=True, return_counts=True)
    return (counts / counts.sum())[inverse] ** -float(power)


def validation_rows(pool: pd.DataFrame, fraction: float, seed: int, by_source: bool = False) -> np.ndarray:
    """Boolean mask over `pool`: the validation slice, stratified as the folds are (``bcc.data.folds.strata``)."""
    if fraction <= 0:
        return np.zeros(len(pool), bool)
    y = strata(pool, pool["source"] if by_source else None).to_numpy()
    if y.shape[1] == 1:
        y = np.hstack([y, 1 - y])
    split = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    _, val = next(split.split(np.zeros(len(pool)), y))
    mask = np.zeros(len(pool), bool)
    mask[val] = True
    return mask


class BCCDataModule(L.LightningDataModule):
    """The dataset at `root` split for test fold `fold` (``conf/data/*.yaml`` instantiates this)."""

    def __init__(self, root: str | Path, fold: int = 0, k: int = 5, split_seed: int = 0, image_size: int = 224,
                 batch_size: int = 32, eval_batch_size: int | None = None, val_fraction: float = 0.15,
                 num_workers: int = 0, seed: int = 0, soft_targets: bool = False,
                 augment: Mapping[str, A.BasicTransform] | None = None, generate: Mapping[str, Any] | None = None,
                 disk_cache: bool = True, allow_outside: bool = False, resize: str = "square", colour: str = "none",
                 sampler: str = "shuffle", sampler_power: float = 1.0, stratify_source: bool = False,
                 test_source: str | None = None, frozen_views: int = 0, frozen_max_gb: float = 8.0):
        super().__init__()
        if root is None or str(root) == "":
            raise UsageError("data.root is not set: point it at your dataset directory (`data=csv data.root=/path`; "
                             "docs/dataset.md)")
        self.preprocess = Preprocess(int(image_size), str(resize), str(colour))
        if sampler not in SAMPLERS:
            raise UsageError(f"data.sampler={sampler!r}: choose one of {list(SAMPLERS)}")
        if not 0.0 <= float(sampler_power) <= 1.0:
            raise UsageError(f"data.sampler_power={sampler_power}: give a number in [0, 1] (1: classes drawn "
                             f"equally often, 0: as they occur)")
        self.sampler, self.sampler_power, self.stratify_source = sampler, float(sampler_power), bool(stratify_source)
        self.test_source = None if test_source in (None, "") else str(test_source)
        self.root = Path(root)
        self.fold, self.k, self.split_seed = int(fold), int(k), int(split_seed)
        self.image_size, self.batch_size = int(image_size), int(batch_size)
        self.eval_batch_size = int(eval_batch_size or 2 * batch_size)
        self.val_fraction, self.num_workers, self.seed = float(val_fraction), int(num_workers), int(seed)
        self.soft_targets, self.augment = bool(soft_targets), dict(augment or {})
        self.generate, self.disk_cache = dict(generate) if generate else None, disk_cache
        self.allow_outside = bool(allow_outside)  # image paths may leave the dataset folder (docs/dataset.md)
        self.frozen_views, self.frozen_max_gb = int(frozen_views), float(frozen_max_gb)
        self._frozen: tuple[str, torch.Tensor] | None = None  # (level, activations) while a stage serves them
        self._table: pd.DataFrame | None = None

    def prepare_data(self) -> None:
        """Generate the synthetic set when asked and absent; write/reuse labels.csv and splits.csv."""
        if self.generate is not None and not (self.root / "images.csv").is_file():
            generate(self.root, **self.generate)
        ensure_labels(self.root, allow_outside=self.allow_outside)
        ensure_splits(self.root, k=self.k, seed=self.split_seed, allow_outside=self.allow_outside,
                      by_source=self.stratify_source)

    @property
    def table(self) -> pd.DataFrame:
        """images.csv joined with labels and folds, each row's split (train/val/test) for this fold."""
        if self._table is None:
            raise RuntimeError("the datamodule is not set up: call setup() first")
        return self._table

    def setup(self, stage: str | None = None) -> None:
        if self._table is not None:
            return
        if not 0 <= self.fold < self.k:
            raise UsageError(f"fold={self.fold} is outside 0..{self.k - 1} (data.k={self.k})")
        table = read_table(self.root, allow_outside=self.allow_outside)
        table["split"] = "train"
        if self.test_source is None:
            table.loc[table["fold"] == self.fold, "split"] = "test"
        else:  # leave one source out: is what the model learnt about BCC more than what it learnt about sources?
            sources = sorted(table["source"].astype(str).unique())
            if self.test_source not in sources:
                raise UsageError(f"data.test_source={self.test_source}: no such source in {self.root / 'images.csv'} "
                                 f"(its sources: {', '.join(sources)})")
            table.loc[table["source"].astype(str) == self.test_source, "split"] = "test"
        pool = table.index[table["split"] == "train"]
        val = validation_rows(table.loc[pool], self.val_fraction, self.split_seed + self.fold, self.stratify_source)
        table.loc[pool[val], "split"] = "val"
        self._table = table
        self.images, self.images_digest = table_images(self.root, table, self.preprocess, self.allow_outside,
                                                       self.disk_cache)

    def rows(self, split: str) -> np.ndarray:
        return np.flatnonzero((self.table["split"] == split).to_numpy())

    def labels(self, rows: np.ndarray) -> np.ndarray:
        return self.table.loc[rows, list(OUTPUTS)].to_numpy(dtype=np.float32)

    def targets(self, rows: np.ndarray) -> np.ndarray:
        y = self.labels(rows)
        if self.soft_targets:
            cols = [f"p_{c}" for c in CODES]
            if all(c in self.table.columns for c in cols):
                y[:, 1:] = self.table.loc[rows, cols].to_numpy(dtype=np.float32)
        return y

    def positive_frequencies(self) -> list[float]:
        """Share of positives per output on the training split (NaN ignored): the default focal alpha."""
        y = self.labels(self.rows("train"))
        seen = np.isfinite(y)
        return [float(y[seen[:, j], j].mean()) if seen[:, j].any() else float("nan") for j in range(y.shape[1])]

    def labelled_counts(self, split: str = "train") -> dict[str, dict[str, int]]:
        """Per output: the split's images with a known label, and how many of them are positive."""
        y = self.labels(self.rows(split))
        return {o: {"labelled": int(np.isfinite(y[:, j]).sum()), "positive": int(np.nansum(y[:, j] == 1))}
                for j, o in enumerate(OUTPUTS)}

    def serve_frozen(self, net: MultitaskNet, level: str, device: str | torch.device = "cpu") -> bool:
        """Serve `net`'s activations at `level` (``trunk``/``pooled``) instead of images, computed once
        (``bcc.models.activations``); False (images served as before) for level ``image`` or ``frozen_views=0``."""
        if level == "image" or self.frozen_views <= 0:
            self._frozen = None
            return False
        acts = activations.activations(net, self.images, level, self.images_digest, self.augment, self.frozen_views,
                                       self.seed, batch_size=self.eval_batch_size, device=device,
                                       max_gb=self.frozen_max_gb,
                                       cache_dir=self.root / ".cache" if self.disk_cache else None)
        self._frozen = (level, acts)
        return True

    def dataset(self, split: str, augment: bool | None = None) -> LesionDataset | ActivationDataset:
        rows = self.rows(split)
        augment = split == "train" if augment is None else augment
        if self._frozen is not None:
            level, acts = self._frozen
            return ActivationDataset(acts, level, rows, self.labels(rows), self.targets(rows), draw_views=augment)
        tf = A.Compose(list(self.augment.values()), seed=self.seed) if augment and self.augment else None
        return LesionDataset(self.images, rows, self.labels(rows), self.targets(rows), tf)

    def _loader(self, split: str, shuffle: bool, batch_size: int, drop_last: bool = False) -> DataLoader:
        ds = self.dataset(split)
        weights = None
        if shuffle and self.sampler == "balanced":
            weights = balancing_weights(self.labels(self.rows(split))[:, 0], self.sampler_power)
        sampler = EpochSeededSampler(ds, self.seed, self._epoch(), weights) if shuffle else None
        return DataLoader(ds, batch_size=batch_size, sampler=sampler, drop_last=drop_last and len(ds) > batch_size,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def _epoch(self) -> int:
        """The epoch fit is about to run (after a restored checkpoint: the one it resumes at)."""
        trainer = getattr(self, "trainer", None)
        return int(trainer.fit_loop.epoch_progress.current.processed) if trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True, self.batch_size, drop_last=True)  # no 1-image BatchNorm batch

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False, self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def image_ids(self, rows) -> list[str]:
        return list(self.table.loc[np.asarray(rows), "image_id"])
