"""What scores a batch in triage and explains it: the torch checkpoint, or the exported ONNX model on ONNX Runtime.

A scorer takes (N, 3, S, S) float32 images in [0, 1] and returns (N, 8) probabilities in OUTPUTS order
and, asked for ``maps=True``, the 8 raw Grad-CAM maps (N, 8, h, w) in ``bcc.explanation.gradcam.raw_cams``'s
form. The torch scorer computes them from its network (the scores come from the same pass); an ONNX
model exported with its maps (output ``cams``, metadata ``bcc.maps``: ``bcc.deploy.onnx_export``) reads
them from its graph, with neither torch's network nor the source checkpoint. :func:`explainer` picks who
explains: ``explain_checkpoint=``, else the scorer itself when it can, else (an ONNX model exported
without maps: ViT) the torch checkpoint its ``bcc.source_checkpoint`` names. ``score`` also returns, for a
fold ensemble (``bcc.deploy.ensemble``), every member's p(BCC) from the same pass: their disagreement.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, NamedTuple, overload

import numpy as np
import torch
from scipy.special import expit

from bcc.core.errors import BadInput, UsageError
from bcc.core.patterns import OUTPUTS
from bcc.data.images import Preprocess
from bcc.deploy.model_card import ModelCard
from bcc.deploy.onnx_model import (
    FOLDS_NAME,
    INPUT_NAME,
    MAPS_NAME,
    OUTPUT_NAME,
    correlation_words,
    ort_session,
)
from bcc.explanation.gradcam import raw_cams
from bcc.models.checkpoint import CheckpointError, load_network
from bcc.models.network import MultitaskNet


class Scores(NamedTuple):
    probs: np.ndarray               # (N, 8) in OUTPUTS order
    cams: torch.Tensor | None       # (N, 8, h, w) raw Grad-CAM maps, when asked for
    folds: np.ndarray | None        # (N, K) each ensemble member's p(BCC); None for a single model


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to `n` for the block, then back to what they were."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load_torch_network(path: str | Path, device: str = "cpu", channels_last: bool | None = True) -> MultitaskNet:
    """``load_network``, with a file whose content is not laid out as ``bcc.train`` writes it (a key of the
    wrong type, a size that is not a number) a :class:`CheckpointError` naming it, and an ONNX model
    refused by its name before torch tries to unpickle it."""
    path = Path(path)
    if path.suffix == ".onnx":
        raise CheckpointError(f"{path}: an exported ONNX model, where a torch checkpoint (best.ckpt) is needed")
    try:
        return load_network(path, device=device, channels_last=channels_last)
    except BadInput:
        raise
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path}: not a checkpoint as bcc.train writes it ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None


class TorchScorer:
    """Probabilities (N, 8) from the torch checkpoint (channels_last, inference_mode); maps by ``raw_cams``.
    The network runs with `threads` intra-op threads (default: torch's setting when it is made)."""

    kind = "torch"
    explains = True
    guarantee = None  # a guaranteed threshold is chosen at export (bcc.deploy.guarantee_calibration)

    def __init__(self, checkpoint: str | Path, device: str = "cpu", threads: int | None = None):
        self.net = load_torch_network(checkpoint, device=device)
        self.threads = int(threads or torch.get_num_threads())
        self.size = self.net.image_size
        self.preprocess: Preprocess = self.net.preprocess
        self.trained: np.ndarray = self.net.trained  # (8,) bool: outputs whose head saw labels of both classes
        self.describe = f"{self.net.backbone_name} (torch, {Path(checkpoint).name})"
        self.maps_source = f"Grad-CAM (torch) from {checkpoint}"

    @overload
    def __call__(self, x: np.ndarray, maps: Literal[True]) -> tuple[np.ndarray, torch.Tensor]: ...
    @overload
    def __call__(self, x: np.ndarray, maps: bool = False) -> tuple[np.ndarray, torch.Tensor | None]: ...

    def __call__(self, x: np.ndarray, maps: bool = False) -> tuple[np.ndarray, torch.Tensor | None]:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        with torch_threads(self.threads):
            if maps:
                cams, logits = raw_cams(self.net, t)
                return torch.sigmoid(logits).cpu().numpy(), cams.cpu()
            with torch.inference_mode():
                t = t.to(next(self.net.parameters()).device).contiguous(memory_format=torch.channels_last)
                return torch.sigmoid(self.net(t)).cpu().numpy(), None

    def score(self, x: np.ndarray, maps: bool = False) -> Scores:
        return Scores(*self(x, maps), None)


class OnnxScorer:
    """Probabilities (N, 8) from an exported model (``bcc.deploy.onnx_export``) on ONNX Runtime's CPU
    provider, and its own Grad-CAM maps where it was exported with them."""

    kind = "onnx"

    def __init__(self, path: str | Path, threads: int = 2):
        try:
            self.session = ort_session(path, threads)
        except Exception as e:  # noqa: BLE001 — onnx/onnxruntime raise their own types for a bad file
            raise CheckpointError(f"{path}: not a readable ONNX model ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0] if str(e) else ''})") from None
        self.card = ModelCard.read(path)
        names = [i.name for i in self.session.get_inputs()], [o.name for o in self.session.get_outputs()]
        if INPUT_NAME not in names[0] or OUTPUT_NAME not in names[1]:
            raise CheckpointError(f"{path}: expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r} "
                                  f"(a model written by python -m bcc.export), found {names}")
        self.explains = MAPS_NAME in names[1]
        self.members = FOLDS_NAME in names[1]
        self.maps, self.guarantee = self.card.maps, self.card.guarantee
        self.size = self._input_size(path)
        self.preprocess = self.card.but(input_size=self.size).preprocess
        self.trained = np.array([o in self.card.trained_outputs for o in OUTPUTS])
        self.describe = f"{self.card.backbone} (ONNX Runtime, {Path(path).name}, {self.card.quantization})"
        check = self.card.int8_check
        if check:
            self.describe += (f"; int8 check on {check.get('data')}: BCC accuracy fp32 {check['accuracy_fp32']:.3f}, "
                              f"int8 {check['accuracy_int8']:.3f}")
        if self.members:
            n = self.session.get_outputs()[names[1].index(FOLDS_NAME)].shape[1]
            what = (self.card.ensemble or {}).get("what") or f"ensemble of {n} fold models"
            self.describe += f"; {what} (mean logits; their disagreement flags a case)"
        self.maps_source = f"Grad-CAM from the ONNX model's own maps ({Path(path).name}, closed form)"
        vs = self.maps.get("int8_vs_fp32")
        if vs:
            self.maps_source += (f"; int8 maps against fp32 on {vs['data']}: mean |Δ| {vs['mean_abs_diff']:.3f}, "
                                 f"{correlation_words(vs)}")

    def _input_size(self, path: str | Path) -> int:
        """The input side S: the graph's fixed (N, 3, S, S) input and the card's ``input_size`` must agree
        (a model fed at another size would score resized-away images); an old card without it: the graph's."""
        shape = self.session.get_inputs()[0].shape
        graph = [d for d in shape[-2:] if isinstance(d, int)]
        size = self.card.input_size or (graph[0] if graph else None)
        if size is None:
            raise CheckpointError(f"{path}: bcc.input_size is not recorded and the graph's input {shape} has no "
                                  f"fixed side; re-export the model with python -m bcc.export")
        if any(d != size for d in graph):
            raise CheckpointError(f"{path}: the graph's input is {shape} but its bcc.input_size metadata says {size}; "
                                  f"re-export the model with python -m bcc.export")
        return size

    @overload
    def __call__(self, x: np.ndarray, maps: Literal[True]) -> tuple[np.ndarray, torch.Tensor]: ...
    @overload
    def __call__(self, x: np.ndarray, maps: bool = False) -> tuple[np.ndarray, torch.Tensor | None]: ...

    def __call__(self, x: np.ndarray, maps: bool = False) -> tuple[np.ndarray, torch.Tensor | None]:
        out = self.session.run([OUTPUT_NAME, MAPS_NAME] if maps else [OUTPUT_NAME],
                               {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})
        return expit(out[0]), torch.from_numpy(out[1]) if maps else None

    def score(self, x: np.ndarray, maps: bool = False) -> Scores:
        names = [OUTPUT_NAME] + ([MAPS_NAME] if maps else []) + ([FOLDS_NAME] if self.members else [])
        out = dict(zip(names, self.session.run(names, {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)}), strict=True))
        return Scores(expit(out[OUTPUT_NAME]), torch.from_numpy(out[MAPS_NAME]) if maps else None,
                      expit(out[FOLDS_NAME][..., 0]) if self.members else None)

    def why_no_maps(self) -> str:
        return self.maps.get("why") or "exported before bcc.export wrote Grad-CAM maps into the model"


def make_scorer(model: str | Path, threads: int = 2, device: str = "cpu") -> TorchScorer | OnnxScorer:
    """The scorer for a model file (``.onnx`` → ONNX Runtime, anything else → a torch checkpoint), running
    with `threads` intra-op threads."""
    model = Path(model)
    if not model.is_file():
        raise CheckpointError(f"checkpoint={model}: no such file")
    return OnnxScorer(model, threads) if model.suffix == ".onnx" else TorchScorer(model, device, threads)


def explainer(scorer: TorchScorer | OnnxScorer, explain_checkpoint: str | Path | None, threads: int = 2
              ) -> tuple[TorchScorer | OnnxScorer | None, str]:
    """``(who computes the maps, what the report says about it)`` (see the module docstring).

    An `explain_checkpoint` that cannot explain is an error; a missing or unreadable source checkpoint of
    an ONNX model without maps only leaves the report without maps (None, and why).
    """
    if explain_checkpoint:
        ex = make_scorer(explain_checkpoint, threads)
        if isinstance(ex, OnnxScorer) and not ex.explains:
            raise CheckpointError(f"explain_checkpoint={explain_checkpoint}: has no Grad-CAM maps "
                                  f"({ex.why_no_maps()}); pass its torch checkpoint")
        if ex.preprocess != scorer.preprocess:
            raise UsageError(f"explain_checkpoint={explain_checkpoint}: input {ex.preprocess}, the model's is "
                             f"{scorer.preprocess}; pass the checkpoint the model was exported from")
        return ex, ex.maps_source
    if isinstance(scorer, TorchScorer) or scorer.explains:
        return scorer, scorer.maps_source
    src = scorer.card.source_checkpoint
    why = scorer.why_no_maps()
    if not (src and Path(src).is_file()):
        return None, (f"unavailable: the ONNX model has no maps ({why}) and its source checkpoint {src!r} is not "
                      f"there; pass explain_checkpoint=<best.ckpt> or explain=false")
    try:
        ex = TorchScorer(src, threads=threads)
    except CheckpointError as e:
        return None, f"unavailable: the ONNX model has no maps ({why}) and {e}"
    return ex, f"{ex.maps_source} (the ONNX model has no maps: {why})"
