"""The calibration of the sensitivity guarantee: a labelled dataset none of the model's networks trained on
becomes the operating threshold of ``bcc.deploy.guarantee``, stored in the exported model's card.

``bcc.export ... guarantee_data=<dataset> epsilon=0.05 delta=0.1 [guarantee_batch=m]``. Before anything is
exported, :func:`calibration_labels` checks the set: it has labels, it is none of the members' training
sets — by content (``data.contract.dataset_hash``, which every checkpoint records in ``trained_on`` and the
card stores as ``training_data_hash``), so a copy under another path is caught as surely as the same
folder — and it holds as many BCC cases as the guarantee needs (``guarantee.check_enough``, the closed form;
too few is exit 2 saying how many). Where a member's training set is at hand, a calibration picture with the
bytes of a training picture is refused too (a subset or a relabelled copy has another content hash). :func:`attach_guarantee` then scores the set with the exported model
itself (ONNX Runtime on the file being deployed, preprocessed as its card says, so an int8 copy gets its own
threshold), chooses the threshold and writes it into the card (``thresholds.bcc`` and ``guarantee``: ε, δ,
the set's size, its BCC count, path and content hash).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.special import expit

from bcc.core.errors import BadInput
from bcc.core.io import atomic_path
from bcc.core.log import get_logger
from bcc.data.contract import DecodeStamp, dataset_hash, inside, load_image_table
from bcc.data.table import read_table
from bcc.deploy.guarantee import Guarantee, check_enough, guaranteed_threshold
from bcc.deploy.int8 import dataset_images
from bcc.deploy.model_card import ModelCard
from bcc.deploy.onnx_export import dataset_root_of
from bcc.deploy.onnx_model import FOLDS_NAME, INPUT_NAME, OUTPUT_NAME, ort_session, save_model
from bcc.models.checkpoint import read_checkpoint

log = get_logger(__name__)


def model_scores(model: str | Path, images: np.ndarray, batch_size: int = 32, threads: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """(p(BCC) (n,), the members' p(BCC) (n, K) or None) of an exported model on (n, 3, S, S) images."""
    sess = ort_session(model, threads)
    outputs = [o.name for o in sess.get_outputs()]
    names = [OUTPUT_NAME] + ([FOLDS_NAME] if FOLDS_NAME in outputs else [])
    runs = [sess.run(names, {INPUT_NAME: np.ascontiguousarray(images[i:i + batch_size])})
            for i in range(0, len(images), batch_size)]
    p = expit(np.concatenate([r[0] for r in runs])[:, 0]) if runs else np.zeros(0)
    folds = expit(np.concatenate([r[1] for r in runs])[..., 0]) if runs and len(names) == 2 else None
    return p, folds


def trained_on(checkpoint: str | Path, allow_outside: bool = False) -> tuple[Path | None, str]:
    """The dataset a checkpoint trained on and its content hash: its ``trained_on`` record, else the dataset
    its job config names (None and ``unknown`` when neither says)."""
    rec = (read_checkpoint(checkpoint).get("hyper_parameters") or {}).get("trained_on") or {}
    root = Path(rec["dataset"]) if rec.get("dataset") else dataset_root_of(checkpoint)
    root = root if root is not None and (root / "images.csv").is_file() else None
    return root, str(rec.get("dataset_hash") or dataset_hash(root, allow_outside))


def picture_digests(root: Path, allow_outside: bool = False) -> dict[str, str]:
    """SHA-256 of each picture's bytes → its image_id (``data.contract.DecodeStamp.digest``)."""
    table = load_image_table(root, check_files=False, allow_outside=allow_outside)
    stamp, where = DecodeStamp(root), str(root / "images.csv")
    return {stamp.digest(rel, inside(root, rel, where, allow_outside)): image_id
            for image_id, rel in zip(table["image_id"], table["image"], strict=True)}


def check_unseen(data: Path, members: Sequence[str | Path], allow_outside: bool) -> None:
    """Refuse a calibration set that is, or shares pictures with, a member's training set: the same
    content hash (a copy under another path), or the same picture bytes where the training set is at hand."""
    content, mine = dataset_hash(data, allow_outside), None
    for m in members:
        root, trained = trained_on(m, allow_outside)
        if trained == content:
            raise BadInput(f"guarantee_data={data}: its content ({content[:19]}…) is the dataset {m} was trained "
                           f"on — a copy of the training set, whose scores are optimistic; calibrate on labelled "
                           f"cases none of the model's networks saw")
        if root is None:
            continue
        mine = mine if mine is not None else picture_digests(data, allow_outside)
        seen = picture_digests(root, allow_outside)
        shared = [(i, seen[d]) for d, i in mine.items() if d in seen]
        if shared:
            raise BadInput(f"guarantee_data={data}: {len(shared)} of its {len(mine)} pictures are pictures {m} "
                           f"was trained on (the same bytes as in {root}, e.g. {shared[0][0]} = {shared[0][1]}); "
                           f"their scores are optimistic — calibrate on labelled cases none of the model's "
                           f"networks saw")


def calibration_labels(data: str | Path, members: Sequence[str | Path], epsilon: float, delta: float,
                       batch: int | None = None, allow_outside: bool = False) -> np.ndarray:
    """The labels (1 = BCC) of ``guarantee_data=``, checked before anything is exported (module docstring)."""
    data = Path(data)
    trained = {r.resolve() for r in (dataset_root_of(m) for m in members) if r is not None}
    if data.resolve() in trained:
        raise BadInput(f"guarantee_data={data}: the model's networks were trained on this dataset, so their scores "
                       f"there are optimistic; calibrate on labelled cases none of them saw")
    y = read_table(data, splits=False, allow_outside=allow_outside)["bcc"].to_numpy().astype(int)
    check_unseen(data, members, allow_outside)
    check_enough(int(y.sum()), epsilon, delta, batch, source=f"guarantee_data={data}")
    return y


def attach_guarantee(model: str | Path, data: str | Path, y: np.ndarray, epsilon: float = 0.05, delta: float = 0.1,
                     batch: int | None = None, allow_outside: bool = False, verbose: bool = True) -> Guarantee:
    """Score the calibration dataset `data` (labels `y` from :func:`calibration_labels`) with `model`, choose
    the guaranteed threshold and write it into the model's card (atomically)."""
    import onnx

    model, data = Path(model), Path(data)
    card = ModelCard.read(model)
    p, _ = model_scores(model, dataset_images(data, card.preprocess, allow_outside=allow_outside))
    g = guaranteed_threshold(y, p, epsilon, delta, batch, source=f"guarantee_data={data}")
    card = card.but(thresholds={**card.thresholds, "bcc": g.threshold, "source": f"bcc.export guarantee on {data}"},
                    guarantee={**g.as_dict(), "data": str(data.resolve()), "data_hash": dataset_hash(data, allow_outside),
                               "statement": g.statement()})
    with atomic_path(model) as tmp:
        save_model(onnx.load(str(model)), tmp, card)
    if verbose:
        log.info(f"[bcc.export] {model.name}: {g.statement()}; {g.deprioritised:.1%} of the calibration cases fall "
                 f"below it")
    return g
