"""Training throughput of the full pipeline against a bare timm loop (issue 3), side by side in one run.

Pipeline: ``BCCDataModule`` (cached images, albumentations train transforms, DataLoader) +
``MultitaskModule`` (3 heads, focal loss, logging) + ``lightning.Trainer`` with the stage callback, built
from the composed Hydra config exactly as ``bcc.train`` does (``instantiate`` / ``build_module``),
stage 0 (the whole network trains, as in the bare loop), on a synthetic set generated in a temp dir.
Images/s are taken from ``on_train_batch_end`` timestamps after a warm-up, so data loading, the step and
the callbacks all count; validation is off (a per-epoch cost, not throughput).

Bare loop: ``timm.create_model(<same architecture>, num_classes=8)``, the same batch size, input size and
channels_last setting, one pre-made float batch, BCE loss, the same optimizer (schedule-free AdamW).

Goal: pipeline / bare ≥ 0.9 (the data pipeline is never the bottleneck). The machine is shared, so the
two alternate step by step (a bare step runs after every pipeline batch) and the ratio of the median step
times is the figure; the ratio of total times (epoch boundaries included) is printed beside it.
``python -m benchmarks.bench_train`` alone.
"""
from __future__ import annotations

import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import timm
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from schedulefree import AdamWScheduleFree

from bcc.data.consensus import ensure_labels
from bcc.data.folds import ensure_splits
from bcc.data.synthetic import generate
from bcc.training.config import compose_config
from bcc.training.protocol import build_module, quiet_lightning

THREADS = 2
CASES = ((64, 32, 40), (224, 32, 10))  # (data.image_size, stage.batch_size, timed steps)
WARMUP = 3


class BareLoop:
    """A bare timm forward/backward/step loop on one pre-made batch: ``step()`` runs one and returns seconds."""

    def __init__(self, timm_name: str, image_size: int, batch: int, channels_last: bool):
        torch.manual_seed(0)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.net = timm.create_model(timm_name, pretrained=False, num_classes=8).to(memory_format=fmt).train()
        self.opt = AdamWScheduleFree(self.net.parameters(), lr=1e-3)
        self.opt.train()
        self.x = torch.rand(batch, 3, image_size, image_size).contiguous(memory_format=fmt)
        self.y = (torch.rand(batch, 8) > 0.5).float()

    def step(self) -> float:
        t = time.perf_counter()
        with torch.enable_grad():
            loss = F.binary_cross_entropy_with_logits(self.net(self.x), self.y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        return time.perf_counter() - t


def _interleaver(bare: BareLoop):
    """A Lightning callback that runs one bare step after every pipeline batch and times both.

    ``pipeline``: seconds from the end of one bare step to the end of the next pipeline batch (fetching
    and augmenting the batch, the training step, logging, callbacks); ``bare``: the bare step's seconds.
    Alternating step by step, both see the same machine load.
    """
    class Interleave(Callback):
        def __init__(self):
            self.pipeline: list[float] = []
            self.bare: list[float] = []
            self.resumed: float | None = None

        def on_train_start(self, trainer, pl_module):
            self.resumed = time.perf_counter()

        def on_train_batch_end(self, *args, **kwargs):
            now = time.perf_counter()
            self.pipeline.append(now - self.resumed)
            self.bare.append(bare.step())
            self.resumed = time.perf_counter()

    return Interleave()


def _config(data_root: Path, out: Path, image_size: int, batch: int):
    ovr = ["experiment=demo", "stage=0", "logger=csv", f"paths.output_dir={out}", f"data.root={data_root}",
           f"data.image_size={image_size}", f"stage.batch_size={batch}", "trainer.enable_progress_bar=false"]
    return compose_config(ovr)[0]


def measure(data_root: Path, out: Path, image_size: int, batch: int, steps: int) -> dict:
    """Stage-0 training of ``steps`` batches (after a warm-up) through DataModule + model + Trainer, built
    as ``bcc.train`` builds them, with a bare loop of the same architecture interleaved step by step."""
    cfg = _config(data_root, out, image_size, batch)
    cl = bool(cfg.model.channels_last)
    L.seed_everything(cfg.seed, verbose=False)
    dm = instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    model = build_module(cfg, dm, load_pretrained=False)
    timer = _interleaver(BareLoop(cfg.backbone.timm_name, image_size, batch, cl))
    trainer = instantiate(cfg.trainer, limit_val_batches=0, num_sanity_val_steps=0, max_epochs=-1,
                          max_steps=WARMUP + steps, enable_checkpointing=False, logger=CSVLogger(cfg.paths.output_dir),
                          callbacks=[instantiate(cfg.callbacks.stage_freezing), timer])
    trainer.fit(model, datamodule=dm)
    pipe, bare = timer.pipeline[WARMUP:], timer.bare[WARMUP:]
    res = {"backbone": cfg.backbone.timm_name, "image_size": image_size, "batch": batch, "channels_last": cl,
           "threads": torch.get_num_threads(), "steps": len(pipe),
           "batches_per_epoch": len(dm.rows("train")) // batch,
           "pipeline_img_s": batch / statistics.median(pipe), "bare_img_s": batch / statistics.median(bare)}
    res["ratio"] = res["pipeline_img_s"] / res["bare_img_s"]
    res["ratio_of_totals"] = sum(bare) / sum(pipe)  # epoch boundaries and load spikes included
    res["ratio_of_minima"] = min(bare) / min(pipe)   # each side's least disturbed step
    print(f"{res['backbone']} {image_size}px batch {batch} channels_last={cl}, {res['threads']} threads, "
          f"{len(pipe)} steps ({res['batches_per_epoch']} per epoch): pipeline {res['pipeline_img_s']:.1f} img/s, "
          f"bare timm loop {res['bare_img_s']:.1f} img/s → ratio {res['ratio']:.2f} (goal ≥ 0.9; "
          f"of totals {res['ratio_of_totals']:.2f}, of fastest steps {res['ratio_of_minima']:.2f})", flush=True)
    return res


def run(cases=CASES, n: int = 400) -> list[dict]:
    quiet_lightning()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*(does not have many workers|smaller than the logging interval).*")
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "synthetic"
            generate(root, n=n, size=max(c[0] for c in cases), seed=0, progress=False)
            ensure_labels(root)
            ensure_splits(root, k=5, seed=0)
            return [measure(root, Path(tmp) / "out", *case) for case in cases]
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    run()
