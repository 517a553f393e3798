"""The model card: what an exported model says about itself, one typed record written into its ONNX metadata.

After timm's ``PretrainedCfg``, the card carries what a reader needs to feed the model and to trust its
output, so no reader guesses it: the input size, how a picture becomes the input (resize mode, colour
constancy), the normalisation (mean and std, read from the network's ``mean``/``std`` buffers; the
network applies them *inside* the graph, so a reader feeds RGB in [0, 1] and the card only documents
them), which outputs were trained, the thresholds, the training data's content hash, the source
checkpoint, the quantisation, what the Grad-CAM output is, and — where they apply — the fold ensemble,
the sensitivity guarantee and the int8 accuracy check. :meth:`ModelCard.write` stores it as ONNX
``metadata_props`` ``bcc.<key>`` (strings; JSON where structured, the keys docs/deploy.md lists);
:meth:`ModelCard.read` reads it back, refusing a malformed entry by its key.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bcc.core.patterns import CODES, OUTPUTS
from bcc.data.images import IMAGE_SIZE, Preprocess
from bcc.models.checkpoint import CheckpointError
from bcc.models.network import MultitaskNet, untrained_note

OPSET = 17
INPUT = "float32 NCHW RGB in [0, 1], dynamic batch"
HOW = ("bcc.data.images.network_view: the picture's view box resized to input_size, then the colour constancy")


@dataclass(frozen=True)
class ModelCard:
    """An exported model's record (module docstring)."""

    backbone: str
    input_size: int
    mean: tuple[float, ...] | None             # the network's normalisation (applied inside the graph)
    std: tuple[float, ...] | None
    resize: str = "square"
    colour: str = "none"
    timm_name: str = ""
    trained_outputs: tuple[str, ...] = OUTPUTS
    not_trained: str = "none"
    thresholds: dict[str, Any] = field(default_factory=dict)
    training_data_hash: str = "unknown"
    training_data: str = "unknown"
    source_checkpoint: str = ""
    stage: str = ""
    quantization: str = "none (fp32)"
    opset: int = OPSET
    maps: dict[str, Any] = field(default_factory=dict)  # what the ``cams`` output is, or why there is none
    ensemble: dict[str, Any] | None = None              # the members and how they are combined
    guarantee: dict[str, Any] | None = None             # bcc.deploy.guarantee_calibration.attach_guarantee
    int8_check: dict[str, Any] | None = None            # bcc.deploy.int8: the accuracy check against fp32

    @classmethod
    def of(cls, net: MultitaskNet, **facts: Any) -> ModelCard:
        """The card of `net` (size, preprocessing, normalisation, trained outputs), with `facts` added."""
        pre = net.preprocess
        return cls(backbone=net.backbone_name, input_size=int(net.image_size),
                   mean=tuple(float(v) for v in net.mean.flatten()), std=tuple(float(v) for v in net.std.flatten()),
                   resize=pre.resize, colour=pre.colour, timm_name=str(net.spec.get("timm_name") or ""),
                   trained_outputs=tuple(o for o, t in zip(OUTPUTS, net.trained, strict=True) if t),
                   not_trained=untrained_note(net.spec) or "none", **facts)

    def but(self, **changes: Any) -> ModelCard:
        """A copy with `changes` (the card is frozen: an int8 copy or a guarantee makes a new one)."""
        return replace(self, **changes)

    @property
    def preprocess(self) -> Preprocess:
        """How a picture becomes this model's input."""
        return Preprocess(self.input_size, self.resize, self.colour)

    def metadata(self) -> dict[str, str]:
        """The ``bcc.<key>`` entries (without the prefix), as strings."""
        meta: dict[str, Any] = {
            "backbone": self.backbone, "timm_name": self.timm_name, "input_size": str(self.input_size), "input": INPUT,
            "preprocess": {"resize": self.resize, "colour": self.colour, "how": HOW},
            "trained_outputs": list(self.trained_outputs), "not_trained": self.not_trained,
            "normalisation": {"mean": list(self.mean or ()), "std": list(self.std or ()), "applied": "inside the model"},
            "outputs": list(OUTPUTS), "codes": list(CODES), "thresholds": self.thresholds,
            "training_data_hash": self.training_data_hash, "training_data": self.training_data,
            "source_checkpoint": self.source_checkpoint, "stage": self.stage, "quantization": self.quantization,
            "opset": str(self.opset), "maps": self.maps,
            **{k: v for k, v in (("ensemble", self.ensemble), ("guarantee", self.guarantee),
                                 ("int8_check", self.int8_check)) if v is not None},
        }
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}

    def write(self, model) -> None:
        """Replace an ``onnx.ModelProto``'s metadata_props with the card."""
        del model.metadata_props[:]
        for k, v in self.metadata().items():
            entry = model.metadata_props.add()
            entry.key, entry.value = f"bcc.{k}", v

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str], where: str | Path) -> ModelCard:
        """The card from ``bcc.*`` entries; a model exported before an entry existed gets its default, a
        malformed entry is a :class:`CheckpointError` naming it."""
        def parsed(key: str, default: Any = None) -> Any:
            raw = meta.get(key)
            if raw in (None, ""):
                return default
            try:
                return json.loads(raw)
            except ValueError as e:
                raise CheckpointError(f"{where}: its bcc.{key} metadata is not valid JSON ({e})") from None

        def mapping(key: str) -> dict[str, Any] | None:
            value = parsed(key)
            if value is not None and not isinstance(value, dict):
                raise CheckpointError(f"{where}: its bcc.{key} metadata is not an object ({value!r})")
            return value

        outputs = parsed("outputs")
        if outputs is not None and tuple(outputs) != OUTPUTS:
            raise CheckpointError(f"{where}: outputs {outputs} are not in this version's order {OUTPUTS}")
        said = meta.get("input_size")
        try:
            size = int(said) if said not in (None, "") else 0
        except ValueError:
            size = -1
        if size and not IMAGE_SIZE[0] <= size <= IMAGE_SIZE[1]:
            raise CheckpointError(f"{where}: bcc.input_size={said!r} is not an input side in pixels "
                                  f"({IMAGE_SIZE[0]}..{IMAGE_SIZE[1]}); re-export the model with python -m bcc.export")
        pre, norm = mapping("preprocess") or {}, mapping("normalisation") or {}
        trained = parsed("trained_outputs")
        if trained is not None and not (isinstance(trained, list) and set(trained) <= set(OUTPUTS)):
            raise CheckpointError(f"{where}: its bcc.trained_outputs metadata is not a list of outputs ({trained!r})")
        try:
            card = cls(backbone=meta.get("backbone", "?"), input_size=size,
                       mean=tuple(map(float, norm["mean"])) if norm.get("mean") else None,
                       std=tuple(map(float, norm["std"])) if norm.get("std") else None,
                       resize=str(pre.get("resize") or "square"), colour=str(pre.get("colour") or "none"),
                       timm_name=meta.get("timm_name", ""),
                       # exported before the record: every output counted as trained
                       trained_outputs=OUTPUTS if trained is None else tuple(o for o in OUTPUTS if o in trained),
                       not_trained=meta.get("not_trained", "none"), thresholds=mapping("thresholds") or {},
                       training_data_hash=meta.get("training_data_hash", "unknown"),
                       training_data=meta.get("training_data", "unknown"),
                       source_checkpoint=meta.get("source_checkpoint", ""), stage=meta.get("stage", ""),
                       quantization=meta.get("quantization", "fp32"), opset=int(meta.get("opset") or OPSET),
                       maps=mapping("maps") or {}, ensemble=mapping("ensemble"), guarantee=mapping("guarantee"),
                       int8_check=mapping("int8_check"))
            if size:
                Preprocess(size, card.resize, card.colour)  # a mode this version does not know is refused here
        except CheckpointError:
            raise
        except (TypeError, ValueError, KeyError) as e:  # Preprocess's BadInput included
            raise CheckpointError(f"{where}: its bcc.preprocess, bcc.normalisation or bcc.opset metadata is "
                                  f"unusable ({e})") from None
        return card

    @classmethod
    def read(cls, path: str | Path) -> ModelCard:
        """The card of the exported model at `path`."""
        return cls.from_metadata(read_metadata(path), path)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The raw ``bcc.*`` metadata_props of an exported model, keys without the ``bcc.`` prefix."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key.removeprefix("bcc."): p.value for p in model.metadata_props if p.key.startswith("bcc.")}
