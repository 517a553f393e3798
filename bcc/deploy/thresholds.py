"""The operating thresholds that turn a model's probabilities into triage decisions.

Later wins: defaults (0.5, uncertainty band 0.1) → the model's own (checkpoint key ``"thresholds"``,
or the ONNX ``bcc.thresholds`` metadata) → ``thresholds.json`` beside the model file (``make eval``
writes it) → ``thresholds=<file>`` → the command line. The format (all keys optional)::

    {"bcc": 0.42, "patterns": {"PN": 0.5, "U": 0.5, "ON": 0.5, "MG": 0.5, "ML": 0.5, "SW": 0.5, "AT": 0.5},
     "uncertainty_band": 0.1, "source": "free text: who set them and how"}
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bcc.core.errors import BadInput
from bcc.core.layout import THRESHOLDS
from bcc.core.patterns import CODES
from bcc.deploy.model_card import ModelCard
from bcc.models.checkpoint import read_checkpoint


@dataclass
class Thresholds:
    bcc: float = 0.5
    patterns: dict[str, float] = field(default_factory=lambda: {c: 0.5 for c in CODES})
    band: float = 0.1
    source: str = "defaults"

    def update(self, d: Mapping[str, Any] | None, source: str) -> Thresholds:
        if not d:
            return self
        unknown = set(d) - {"bcc", "patterns", "uncertainty_band", "band", "source"}
        if unknown:
            raise BadInput(f"{source}: unknown threshold key(s) {sorted(unknown)}")
        if d.get("bcc") is not None:
            self.bcc = _unit(d["bcc"], f"{source}: bcc")
        patterns = d.get("patterns") or {}
        if not isinstance(patterns, Mapping):
            raise BadInput(f"{source}: patterns = {patterns!r} is not an object of code → threshold, e.g. "
                           f"{{\"PN\": 0.5, \"AT\": 0.4}}")
        for code, v in patterns.items():
            if code not in CODES:
                raise BadInput(f"{source}: unknown pattern code {code!r}; codes are {CODES}")
            self.patterns[code] = _unit(v, f"{source}: patterns.{code}")
        band = d.get("uncertainty_band", d.get("band"))
        if band is not None:
            self.band = _unit(band, f"{source}: uncertainty_band")
        self.source = f"{self.source} + {source}" if self.source != "defaults" else source
        if d.get("source"):
            self.source += f" ({d['source']})"
        return self

    def as_dict(self) -> dict[str, Any]:
        return {"bcc": self.bcc, "patterns": dict(self.patterns), "uncertainty_band": self.band,
                "source": self.source}

    @classmethod
    def from_dict(cls, d: Any, source: str) -> Thresholds:
        """The thresholds a run recorded (:meth:`as_dict`, e.g. ``run.json``), every value required: a
        record that lacks one is refused rather than filled with a default."""
        if not isinstance(d, Mapping):
            raise BadInput(f"{source}: expected an object like {{\"bcc\": 0.5, \"patterns\": {{...}}, "
                           f"\"uncertainty_band\": 0.1}}, got {type(d).__name__}")
        patterns = d.get("patterns")
        missing = [k for k in ("bcc", "uncertainty_band") if d.get(k) is None] + (
            [f"patterns.{c}" for c in CODES if c not in patterns] if isinstance(patterns, Mapping) else ["patterns"])
        if missing:
            raise BadInput(f"{source}: missing {', '.join(missing)} (a run records every threshold it used)")
        th = cls().update({k: v for k, v in d.items() if k != "source"}, source)
        th.source = str(d.get("source") or source)
        return th

    def detect(self, probs: np.ndarray) -> np.ndarray:
        """Is each pattern detected? (N, 7) bool, CODES order, from `probs` (N, 8) in OUTPUTS order: its
        probability at or above its own threshold. The one place this is decided (triage, its report and
        the review app all ask here); NaN (a head never trained) is never detected."""
        p = np.asarray(probs, dtype=np.float64).reshape(-1, 1 + len(CODES))[:, 1:]
        with np.errstate(invalid="ignore"):
            return p >= np.array([self.patterns[c] for c in CODES])


def _unit(v: Any, what: str) -> float:
    if isinstance(v, bool):  # JSON true would pass float() as 1.0
        raise BadInput(f"{what} = {str(v).lower()} is not a number")
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise BadInput(f"{what} = {v!r} is not a number") from None
    if not 0.0 <= v <= 1.0:
        raise BadInput(f"{what} = {v} is not in [0, 1]")
    return v


def _model_thresholds(model_path: Path) -> dict | None:
    if model_path.suffix == ".onnx":
        return ModelCard.read(model_path).thresholds or None
    return read_checkpoint(model_path).get("thresholds")


def _read_json(f: Path) -> dict:
    try:
        d = json.loads(f.read_text())
    except ValueError as e:
        raise BadInput(f"{f}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise BadInput(f"{f}: expected a JSON object like {{\"bcc\": 0.42, \"uncertainty_band\": 0.1}}")
    return d


def load_thresholds(model_path: str | Path, file: str | Path | None = None,
                    overrides: Mapping[str, Any] | None = None) -> Thresholds:
    """Thresholds for a model file: defaults → model metadata → thresholds.json beside it → `file` → overrides."""
    model_path = Path(model_path)
    th = Thresholds()
    th.update(_model_thresholds(model_path), f"{model_path.name} metadata")
    beside = model_path.parent / THRESHOLDS
    if beside.is_file():
        th.update(_read_json(beside), str(beside))
    if file:
        if not Path(file).is_file():
            raise BadInput(f"thresholds={file}: no such file")
        th.update(_read_json(Path(file)), str(file))
    th.update({k: v for k, v in (overrides or {}).items() if v is not None}, "command line")
    return th
