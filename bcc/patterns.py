"""The seven dermoscopic codes, their fixed order and the clinical rule: the one place everything imports."""
from __future__ import annotations

import numpy as np

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
#: Model outputs in fixed order: the diagnosis first, then the seven codes.
OUTPUTS: tuple[str, ...] = ("bcc",) + CODES


def clinical_rule(patterns: np.ndarray) -> np.ndarray:
    """BCC verdict from a (n, 7) 0/1 array in CODES order.

    PN present ⇒ non-BCC; otherwise any BCC pattern ⇒ BCC; none ⇒ non-BCC.
    """
    patterns = np.asarray(patterns)
    if patterns.ndim != 2 or patterns.shape[1] != len(CODES):
        raise ValueError(f"expected an (n, {len(CODES)}) array in order {CODES}, got shape {patterns.shape}")
    pn = patterns[:, CODES.index(NEGATIVE_CODE)] > 0
    any_bcc = (patterns[:, [CODES.index(c) for c in BCC_CODES]] > 0).any(axis=1)
    return (~pn & any_bcc).astype(np.int64)
