"""Who has what: the true patterns (the paper's Table 2 counts), the sources and devices, the segmented subset."""
from __future__ import annotations

import numpy as np

from bcc.core.patterns import BCC_CODES, CODES, clinical_rule
from bcc.data.synthetic.shapes import iround

PAPER_N = 1559
PAPER_BCC = 775
PAPER_COUNTS: dict[str, int] = {"PN": 557, "U": 385, "ON": 333, "MG": 191, "ML": 244, "SW": 178, "AT": 455}
PAPER_XAI = 334
PAPER_ISIC = 136


CENTRES: tuple[str, ...] = tuple(f"centre_{k:02d}" for k in range(1, 7))
CENTRE_WEIGHTS = np.array([0.24, 0.20, 0.16, 0.15, 0.14, 0.11])

_C = {c: k for k, c in enumerate(CODES)}


def scaled_counts(n: int) -> dict[str, int]:
    """Table-2 counts scaled to ``n``: keys ``bcc``, ``pn``, ``nevus``, ``xai``, ``isic`` and the codes."""
    f = n / PAPER_N
    n_bcc = min(n, iround(PAPER_BCC * f))
    n_pn = min(n - n_bcc, iround(PAPER_COUNTS["PN"] * f))
    out = {"bcc": n_bcc, "pn": n_pn, "nevus": n - n_bcc - n_pn}
    for c in BCC_CODES:
        out[c] = min(n_bcc, iround(PAPER_COUNTS[c] * f))
    out["PN"] = n_pn
    out["xai"] = iround(PAPER_XAI * f)
    out["isic"] = min(n - n_bcc, iround(PAPER_ISIC * f))
    return out


def global_rng(seed: int, n: int, stream: int) -> np.random.Generator:
    # 4-word entropy: never equal to a per-image [seed, i] stream.
    return np.random.default_rng([seed, 0x5EED, 0xBCC + stream, n])


def sample_truth(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 7) int array of true patterns in CODES order with the Table-2 counts scaled to n."""
    k = scaled_counts(n)
    truth = np.zeros((n, len(CODES)), dtype=np.int64)
    order = rng.permutation(n)
    bcc_idx = order[: k["bcc"]]
    pn_idx = order[k["bcc"]: k["bcc"] + k["pn"]]
    truth[pn_idx, _C["PN"]] = 1
    nb = len(bcc_idx)
    if nb:
        # latent subtype: 1 = pigmented (ON, MG, ML, SW), 0 = nodular / ulcerated (AT, U)
        pig = rng.random(nb) < 0.5
        affinity = {"U": (1.6, 0.7), "AT": (1.6, 0.7), "ON": (0.6, 1.6), "MG": (0.6, 1.6),
                    "ML": (0.6, 1.6), "SW": (0.6, 1.6)}
        sub = np.zeros((nb, len(BCC_CODES)), dtype=np.int64)
        for j, c in enumerate(BCC_CODES):
            w = np.where(pig, affinity[c][1], affinity[c][0])
            # ON & MG belong together; so do AT & U (through the subtype)
            pick = rng.choice(nb, size=k[c], replace=False, p=w / w.sum())
            sub[pick, j] = 1
        # every BCC image needs a pattern: move one from an image that has >= 2 of the same code
        for r in np.flatnonzero(sub.sum(1) == 0):
            for j in rng.permutation(len(BCC_CODES)):
                donors = np.flatnonzero((sub[:, j] == 1) & (sub.sum(1) >= 2))
                if len(donors):
                    d = donors[rng.integers(len(donors))]
                    sub[d, j], sub[r, j] = 0, 1
                    break
            else:  # too few patterns in total (tiny n): add one
                sub[r, rng.integers(len(BCC_CODES))] = 1
        truth[np.ix_(bcc_idx, np.array([_C[c] for c in BCC_CODES]))] = sub
    return truth


def sample_sources(truth: np.ndarray, rng: np.random.Generator) -> list[str]:
    n = len(truth)
    k = scaled_counts(n)
    src = np.array(CENTRES)[rng.choice(len(CENTRES), size=n, p=CENTRE_WEIGHTS / CENTRE_WEIGHTS.sum())]
    src = src.astype(object)
    none = np.flatnonzero(truth.sum(1) == 0)
    pn = np.flatnonzero(truth[:, _C["PN"]] == 1)
    n_none = min(len(none), iround(0.6 * k["isic"]))
    n_pn = min(len(pn), k["isic"] - n_none)
    isic = np.concatenate([rng.choice(none, n_none, replace=False), rng.choice(pn, n_pn, replace=False)])
    src[isic.astype(int)] = "isic"
    return [str(s) for s in src]


def sample_devices(sources: list[str], rng: np.random.Generator) -> list[str]:
    """The device (a centre's look) of each image: its centre's own; for an ``isic`` image a centre's drawn
    with the centres' weights, so that the look of the (all non-BCC) isic subset cannot give the label away."""
    drawn = np.array(CENTRES)[rng.choice(len(CENTRES), size=len(sources), p=CENTRE_WEIGHTS / CENTRE_WEIGHTS.sum())]
    return [str(d) if s == "isic" else s for s, d in zip(sources, drawn, strict=True)]


def sample_xai(truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Boolean (n,) array: images whose pattern masks are written (the segmented XAI subset).

    Drawn among the BCC images, as the paper's 334 segmentations of BCC patterns."""
    cand = np.flatnonzero(clinical_rule(truth) == 1)
    k = min(len(cand), scaled_counts(len(truth))["xai"])
    out = np.zeros(len(truth), dtype=bool)
    out[rng.choice(cand, k, replace=False)] = True
    return out
