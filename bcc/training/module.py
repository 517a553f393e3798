"""The multitask LightningModule: the stage's loss, schedule-free AdamW, metrics, test-fold predictions.

Schedule-free AdamW (``schedulefree.AdamWScheduleFree``) keeps two weight sequences; the *averaged*
ones (its eval mode) are what we evaluate and save. So the optimizer is put in train mode at the start
of every training epoch and in eval mode for validation, test, predict, at the end of fit (the
hand-over to the next stage) and for every checkpoint (ModelCheckpoint saves inside validation, where
eval mode holds; ``on_save_checkpoint`` guards the other cases). Before each validation the BatchNorm
statistics of the *trainable* BatchNorm layers are recomputed for the averaged weights, as the
schedulefree README prescribes (model in train mode, optimizer in eval mode, ``bn_recalibration_batches``
training batches under no_grad, cumulative average). Frozen BatchNorm layers keep their statistics.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from bcc.core.predictions import predictions_frame
from bcc.models.metrics import OutputMetrics
from bcc.models.network import MultitaskNet


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss; the message names stage, epoch and batch."""


class MultitaskModule(L.LightningModule):
    """One stage of the protocol on a ``MultitaskNet`` (``conf/model/multitask.yaml`` instantiates this).

    `optimizer` is a partial (``_partial_: true``) taking the parameter groups and ``lr``; the parts the
    stage trains are frozen/unfrozen by ``bcc.training.stages.StageFreezing``.
    """

    def __init__(self, net: MultitaskNet, loss: nn.Module, optimizer: Callable, stage: int, lr: float,
                 trainable: Sequence[str], last_blocks_lr_scale: float = 1.0, bn_recalibration_batches: int = 50,
                 channels_last: bool = True):
        super().__init__()
        self.save_hyperparameters(ignore=["net", "loss", "optimizer"])
        self.hparams["network"] = net.spec  # what bcc.models.checkpoint rebuilds the network from (live: the
        # record of trained heads is written into the spec when the stage starts)
        self.net, self.loss_fn, self.optimizer_factory = net, loss, optimizer
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.metrics = nn.ModuleDict({"val": OutputMetrics("val"), "test": OutputMetrics("test")})
        #: per split: (image index, labels, probabilities) of the last epoch, one row per image once scored
        self.outputs: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {"val": [], "test": []}
        self._modes: dict[str, bool] = {}
        self.images_seen = 0  # training images (with repeats) through training_step: the stage's images/s
        self.frozen: dict = {}  # what bcc.models.activations served this stage (set by the protocol)

    # ---- data → network -------------------------------------------------------------------------------
    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
        return x.contiguous(memory_format=torch.channels_last) if self.hparams["channels_last"] and x.ndim == 4 else x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.prepare(images))

    def logits(self, batch: dict) -> torch.Tensor:
        """(N, 8) logits of a batch of images, or of the frozen part's activations (``trunk``/``pooled``:
        ``bcc.models.activations``) when the datamodule serves those."""
        for level in ("trunk", "pooled"):
            if level in batch:
                return self.net.logits_from(level, self.prepare(batch[level]))
        return self(batch["image"])

    # ---- steps ----------------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, heads = self.loss_fn(self.logits(batch), batch["target"])
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"stage {self.hparams['stage']}: non-finite loss ({loss.item()}) at epoch {self.current_epoch}, "
                f"batch {batch_idx}; lower stage.lr, check the images and labels, or resume from an earlier "
                f"checkpoint")
        n = batch["target"].shape[0]
        self.images_seen += n
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=n)
        self.log_dict({f"train/loss_{h}": v for h, v in heads.items()}, on_step=False, on_epoch=True, batch_size=n)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self.logits(batch)
        loss, _ = self.loss_fn(logits, batch["target"])
        self.log("val/loss", loss, on_epoch=True, batch_size=batch["target"].shape[0])
        self._collect("val", batch, torch.sigmoid(logits))

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._collect("test", batch, torch.sigmoid(self.logits(batch)))

    def on_validation_epoch_start(self) -> None:
        self.outputs["val"] = []

    def on_test_epoch_start(self) -> None:
        self.outputs["test"] = []

    def on_validation_epoch_end(self) -> None:
        self._score("val")

    def on_test_epoch_end(self) -> None:
        self._score("test")

    def _collect(self, split: str, batch: dict, probs: torch.Tensor) -> None:
        self.outputs[split].append((batch["index"].cpu().numpy(), batch["label"].cpu().numpy(),
                                    probs.detach().cpu().numpy()))

    def _score(self, split: str) -> None:
        """The split's metrics over each image exactly once: under DDP every process gathers every process's
        outputs and drops the DistributedSampler's padding (repeated indices) before computing, so all
        processes compute — and log — the same figures, and no torchmetrics synchronisation (which would
        count the padding) is involved."""
        idx, y, p = (np.concatenate([o[i] for o in self.outputs[split]]) for i in range(3))
        if self.trainer.world_size > 1:
            idx, y, p = (cast(torch.Tensor, self.all_gather(torch.as_tensor(a).to(self.device))).flatten(0, 1)
                         .cpu().numpy() for a in (idx, y, p))
            _, first = np.unique(idx, return_index=True)
            idx, y, p = idx[first], y[first], p[first]
        self.outputs[split] = [(idx, y, p)]
        metrics = cast(OutputMetrics, self.metrics[split])
        metrics.use_trained(self.net.trained)
        metrics.update(torch.from_numpy(p), torch.from_numpy(y))
        self.log_dict(metrics.compute(), sync_dist=False)
        metrics.reset()

    def predict_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return torch.sigmoid(self.logits(batch))

    def predictions(self, split: str, image_ids: Sequence[str], fold: int) -> pd.DataFrame:
        """The last validation or test run as a prediction table (``bcc.core.predictions``), one row per image;
        an output whose head was never trained on its label is blank (no prediction), not its noise."""
        idx, y, p = self.outputs[split][0]
        p = np.where(self.net.trained, p, np.nan)
        return predictions_frame([image_ids[i] for i in idx], fold, y, p)

    # ---- schedule-free optimizer ----------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        late = {id(p) for m in self.net.part("last_blocks") for p in m.parameters()}
        params = [p for p in self.net.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"stage {hp.stage}: nothing to train (stage.trainable={list(hp.trainable)})")
        groups = [{"params": [p for p in params if id(p) not in late], "lr": hp.lr},
                  {"params": [p for p in params if id(p) in late], "lr": hp.lr * hp.last_blocks_lr_scale}]
        return self.optimizer_factory([g for g in groups if g["params"]], lr=hp.lr)

    def _optimizers(self) -> list:
        trainer = self._trainer
        return [o for o in (trainer.optimizers if trainer is not None else []) if hasattr(o, "eval")]

    def optimizer_eval(self) -> None:
        for opt in self._optimizers():
            opt.eval()

    def optimizer_train(self) -> None:
        for opt in self._optimizers():
            opt.train()

    def on_train_epoch_start(self) -> None:
        self.optimizer_train()

    def on_train_end(self) -> None:
        self.optimizer_eval()

    def _fitting(self) -> bool:
        return self._trainer is not None and self._trainer.state.fn == TrainerFn.FITTING

    def on_validation_model_eval(self) -> None:
        self._modes = {name: m.training for name, m in self.named_modules()}
        if self._optimizers() and self._fitting():
            self.optimizer_eval()
            self.recalibrate_batchnorm()
        self.eval()

    def on_validation_model_train(self) -> None:
        for name, m in self.named_modules():
            m.training = self._modes.get(name, m.training)
        if self._fitting():  # after trainer.validate(ckpt_path=...) the weights are a checkpoint's, not y
            self.optimizer_train()

    def on_test_model_eval(self) -> None:
        self.optimizer_eval()
        self.eval()

    def on_predict_model_eval(self) -> None:
        self.optimizer_eval()
        self.eval()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        opts = self._optimizers()
        if any(g.get("train_mode") for o in opts for g in o.param_groups):  # saved outside validation
            for o in opts:
                o.eval()
            checkpoint["state_dict"] = {k: v.detach().clone() for k, v in self.state_dict().items()}
            if "optimizer_states" in checkpoint:  # absent from a weights-only checkpoint (best.ckpt)
                checkpoint["optimizer_states"] = [o.state_dict() for o in self.trainer.optimizers]
            for o in opts:
                o.train()

    @torch.no_grad()
    def recalibrate_batchnorm(self) -> None:
        """Recompute running stats of BatchNorm layers in train mode for the averaged weights."""
        trainer = self._trainer
        n = int(self.hparams["bn_recalibration_batches"])
        bns = [m for m in self.net.modules() if isinstance(m, _BatchNorm) and m.training and m.track_running_stats]
        loader = getattr(trainer, "train_dataloader", None) if trainer is not None else None
        if not bns or n <= 0 or trainer is None or loader is None or trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
        for i, batch in enumerate(loader):
            if i >= n:
                break
            self.logits({k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()})
        for m, mom in zip(bns, momenta, strict=True):
            m.momentum = mom

