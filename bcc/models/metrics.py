"""torchmetrics per output (AUROC, recall, specificity, precision, accuracy, F1) plus the rule's verdict.

One ``MetricCollection`` per output of ``OUTPUTS`` (prefix ``<split>/<output>/``), updated per batch with
that output's observed labels only (NaN = missing), computed per epoch. ``<split>/rule/*`` scores the
clinical rule applied to the pattern outputs against the BCC label, and ``<split>/patterns/<metric>``
averages a metric over the seven codes. ``trained`` ((8,) bool, the network's record) keeps outputs whose
head never saw both classes out of the rule — the rule over untrained heads is noise, not a verdict —
and out of the pattern averages; it is not computed when no BCC pattern is trained.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import cast

import torch
from torch import nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryF1Score,
    BinaryPrecision,
    BinaryRecall,
    BinarySpecificity,
)

from bcc.core.patterns import CODES, OUTPUTS, clinical_rule_torch, rule_defined

METRICS = ("auroc", "recall", "specificity", "precision", "accuracy", "f1")
RULE = "rule"


def _collection(prefix: str, with_auroc: bool = True) -> MetricCollection:
    # sync_on_compute=False: under DDP the LightningModule computes over every process's gathered outputs
    metrics: dict[str, Metric | MetricCollection] = {
        "recall": BinaryRecall(sync_on_compute=False), "specificity": BinarySpecificity(sync_on_compute=False),
        "precision": BinaryPrecision(sync_on_compute=False), "accuracy": BinaryAccuracy(sync_on_compute=False),
        "f1": BinaryF1Score(sync_on_compute=False),
    }
    if with_auroc:
        metrics["auroc"] = BinaryAUROC(sync_on_compute=False)
    return MetricCollection(metrics, prefix=prefix)


class OutputMetrics(nn.Module):
    """All metrics of one split (``val`` or ``test``), computed in this process (no DDP synchronisation)."""

    def __init__(self, split: str):
        super().__init__()
        self.split = split
        self.outputs = nn.ModuleDict({o: _collection(f"{split}/{o}/") for o in OUTPUTS})
        self.rule = _collection(f"{split}/{RULE}/", with_auroc=False)
        self._seen: set[str] = set()  # collections updated since the last reset
        self.trained = torch.ones(len(OUTPUTS), dtype=torch.bool)

    def _output(self, o: str) -> MetricCollection:
        return cast(MetricCollection, self.outputs[o])

    def use_trained(self, trained) -> None:
        """Restrict the rule and the pattern averages to these outputs ((8,) bool in OUTPUTS order)."""
        self.trained = torch.as_tensor(trained, dtype=torch.bool)

    @torch.no_grad()
    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        """probs, labels: (N, 8) in OUTPUTS order; labels 0/1 or NaN."""
        for j, o in enumerate(OUTPUTS):
            seen = torch.isfinite(labels[:, j])
            if seen.any() and self.trained[j]:
                self._output(o).update(probs[seen, j], labels[seen, j].long())
                self._seen.add(o)
        known = self.trained[1:]
        if not rule_defined(known.numpy()):
            return
        verdict = clinical_rule_torch(probs[:, 1:] >= 0.5, known)
        seen = torch.isfinite(labels[:, 0])
        if seen.any():
            self.rule.update(verdict[seen].float(), labels[seen, 0].long())
            self._seen.add(RULE)

    def compute(self) -> dict[str, float]:
        out: dict[str, float] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a class absent from a tiny split: AUROC is 0, not an error
            for o in OUTPUTS:
                if o in self._seen:
                    out.update({k: float(v) for k, v in self._output(o).compute().items()})
            if RULE in self._seen:
                out.update({k: float(v) for k, v in self.rule.compute().items()})
        for m in METRICS:
            vals = [out[f"{self.split}/{c}/{m}"] for c in CODES if f"{self.split}/{c}/{m}" in out]
            if vals:
                out[f"{self.split}/patterns/{m}"] = sum(vals) / len(vals)
        return out

    def reset(self) -> None:
        for o in OUTPUTS:
            self._output(o).reset()
        self.rule.reset()
        self._seen.clear()


def nested(flat: Mapping[str, float], split: str) -> dict[str, dict[str, float]]:
    """``{"<split>/<output>/<metric>": v}`` → ``{output: {metric: v}}`` (the metrics.json layout)."""
    out: dict[str, dict[str, float]] = {}
    for key, v in flat.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == split:
            out.setdefault(parts[1], {})[parts[2]] = float(v)
    return out
