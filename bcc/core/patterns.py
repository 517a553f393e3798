"""The seven dermoscopic codes, the model's output order, its three heads and the clinical rule.

The one place everything imports: the network's logit columns, the loss's heads, the metrics, the
prediction files and the reports all follow ``OUTPUTS`` and ``HEADS`` from here.
"""
from __future__ import annotations

import numpy as np
import torch

#: Pattern codes in the paper's order (Table 1). PN is the negative criterion.
CODES: tuple[str, ...] = ("PN", "U", "ON", "MG", "ML", "SW", "AT")
NEGATIVE_CODE = "PN"
BCC_CODES: tuple[str, ...] = tuple(c for c in CODES if c != NEGATIVE_CODE)
NAMES: dict[str, str] = {
    "PN": "pigment network",
    "U": "ulceration",
    "ON": "ovoid nests",
    "MG": "multiglobules",
    "ML": "maple-leaf-like",
    "SW": "spoke wheel",
    "AT": "arborizing telangiectasia",
}
#: The names of the paper's tables (Table 3 rows).
PAPER_NAMES: dict[str, str] = {"PN": "Pigment Network", "U": "Ulceration", "ON": "Ovoid Nests",
                               "MG": "Multiglobules", "ML": "Maple Leaf-like", "SW": "Spoke Wheel",
                               "AT": "Arborizing Telangiectasia"}
#: Model outputs in fixed order: the diagnosis first, then the seven codes.
OUTPUTS: tuple[str, ...] = ("bcc", *CODES)
#: The network's three heads (paper §2.3) and the outputs each one produces, in OUTPUTS order.
HEADS: dict[str, tuple[str, ...]] = {"diagnosis": ("bcc",), "negative": (NEGATIVE_CODE,), "patterns": BCC_CODES}
#: Head → its columns of the (N, 8) logits, targets and probabilities.
HEAD_COLUMNS: dict[str, list[int]] = {h: [OUTPUTS.index(o) for o in outs] for h, outs in HEADS.items()}

assert [o for outs in HEADS.values() for o in outs] == list(OUTPUTS), "heads must cover OUTPUTS in order"


def clinical_rule(patterns: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    """BCC verdict from a (n, 7) 0/1 array in CODES order.

    PN present ⇒ non-BCC; otherwise any BCC pattern ⇒ BCC; none ⇒ non-BCC. `known` ((7,) bool, default all)
    restricts the rule to the codes that can be read — a model's trained outputs, a dataset's labelled
    codes: an unknown PN is not applied, an unknown BCC pattern never fires. Use :func:`rule_defined` to
    ask whether the rule can say anything at all.
    """
    patterns = np.asarray(patterns)
    if patterns.ndim != 2 or patterns.shape[1] != len(CODES):
        raise ValueError(f"expected an (n, {len(CODES)}) array in order {CODES}, got shape {patterns.shape}")
    use = np.ones(len(CODES), bool) if known is None else np.asarray(known, bool)
    present = (patterns > 0) & use
    pn = present[:, CODES.index(NEGATIVE_CODE)]
    any_bcc = present[:, [CODES.index(c) for c in BCC_CODES]].any(axis=1)
    return (~pn & any_bcc).astype(np.int64)


def rule_defined(known: np.ndarray) -> bool:
    """Whether the rule over the `known` codes ((7,) bool) can call anything BCC: some BCC pattern is known."""
    known = np.asarray(known, bool)
    return bool(known[[CODES.index(c) for c in BCC_CODES]].any())


def clinical_rule_torch(patterns: torch.Tensor, known: torch.Tensor | None = None) -> torch.Tensor:
    """``clinical_rule`` on a (n, 7) bool/0-1 tensor (for metrics computed on the device): bool (n,)."""
    present = patterns > 0
    if known is not None:
        present = present & known.to(present.device)
    pn = present[:, CODES.index(NEGATIVE_CODE)]
    return ~pn & present[:, [CODES.index(c) for c in BCC_CODES]].any(dim=1)


def rule_verdict(probs: np.ndarray, threshold: float = 0.5, known: np.ndarray | None = None) -> np.ndarray:
    """The clinical rule over the pattern outputs (columns 1..7 of OUTPUTS) at `threshold`."""
    return clinical_rule((np.asarray(probs)[:, 1:] >= threshold).astype(np.int64), known)
