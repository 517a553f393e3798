"""``report.html``: the triage worklist as one self-contained page (``bcc.deploy.triage`` writes it).

Everything is inside the file: images are base64 ``data:`` URIs, the style is inline, and a
Content-Security-Policy forbids any network request and any script but the one that draws the Grad-CAM
maps from their raw arrays (``bcc.deploy.maps_js``, allowed by its hash). A summary at the top (images
scored, likely BCC, flagged for review, skipped, thresholds, the model's sensitivity guarantee, model),
then one card per lesion in worklist order: the image, the verdicts, the review flag in words, every
pattern with its probability (detected ones marked), and the eight maps (diagnosis and each pattern).
Skipped inputs are listed at the end with the reason.

The page comes from Jinja templates (``templates/``: ``base.html``, ``macros.html``, ``report.html``)
with autoescaping; the review app (``bcc.review``) extends the same base and calls the same macros, so a
name, a note or a guarantee is shown the same way, escaped the same way, in both.

Every image written is re-encoded from decoded pixels (``Image.fromarray`` → JPEG with no ``exif=``,
``icc_profile=`` or comment), so no EXIF (GPS, dates, device, names), ICC profile, XMP, text chunk or
other metadata of the original file reaches the report. ``bcc.predict`` encodes the pictures while it
scores (:func:`lesion_figures`), so a long worklist never holds full-size pixels in memory.
"""
from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from PIL import Image

from bcc.core.errors import BadInput
from bcc.core.io import atomic_path, printable
from bcc.core.patterns import CODES, NAMES, OUTPUTS
from bcc.deploy.maps_js import SCRIPT, csp_hash, maps_attribute
from bcc.deploy.thresholds import Thresholds

CARD_SIDE = 320     # lesion image, longest side in px
OVERLAY_SIDE = 160  # Grad-CAM maps, drawn by the page

#: Options of every Jinja environment that renders bcc's pages (this module's and the review app's):
#: each value shown goes through ``printable`` (control and bidirectional characters shown escaped) before
#: it is HTML-escaped, and a name the template does not get is an error, not an empty string.
JINJA_OPTIONS: dict[str, Any] = {
    "trim_blocks": True, "lstrip_blocks": True, "undefined": StrictUndefined,
    "finalize": lambda v: printable(v) if isinstance(v, str) and not isinstance(v, Markup) else v}


def configure(env: Environment) -> Environment:
    """Give `env` what bcc's templates use: the maps' script (the one constant shown unescaped; pages allow
    it by its hash) and the ``printable`` filter. The review app calls it on Flask's environment."""
    env.globals.update(MAPS_SCRIPT=Markup(SCRIPT), CSP_HASH=Markup(csp_hash()))
    env.filters["printable"] = printable
    return env


#: The environment that renders report.html (the templates beside this module, autoescaped).
ENV = configure(Environment(loader=PackageLoader("bcc.deploy", "templates"), autoescape=True, **JINJA_OPTIONS))


def _fit(im: Image.Image, side: int) -> Image.Image:
    """`im` with the longest side at most `side` (a shrunk copy, LANCZOS; `im` itself when it fits)."""
    if max(im.size) <= side:
        return im
    im = im.copy()
    im.thumbnail((side, side), Image.Resampling.LANCZOS)
    return im


def data_uri(rgb: np.ndarray, side: int, fmt: str = "JPEG", optimize: bool = True) -> str:
    """A base64 data URI of `rgb` re-encoded from pixels (no metadata), longest side at most `side`.
    `optimize`: JPEG Huffman tables fitted to the picture (about 7 % smaller, 2.7 times the encoding time)."""
    im = _fit(Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB"), side)
    buf = io.BytesIO()
    if fmt == "JPEG":
        im.save(buf, "JPEG", quality=85, optimize=optimize)  # no exif=, icc_profile=: nothing but pixels
    else:
        im.save(buf, "PNG", optimize=True)
    mime = "jpeg" if fmt == "JPEG" else "png"
    return f"data:image/{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def lesion_figures(rgb: np.ndarray) -> dict[str, str]:
    """The card's picture as a data URI: ``"image"``, longest side ``CARD_SIDE`` (the maps are drawn over it
    by the page)."""
    card = _fit(Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB"), CARD_SIDE)
    return {"image": data_uri(np.asarray(card), CARD_SIDE)}



@dataclass(frozen=True)
class MapsView:
    """What the ``maps`` macro draws: the raw maps as the page reads them, where the network looked, which
    outputs are marked detected and which were never trained."""

    data: str                                   # maps_attribute(cams)
    view: str                                   # JSON [left, top, right, bottom], fractions of the picture
    detected: frozenset[str] = frozenset()
    untrained: frozenset[str] = frozenset()
    side: int = OVERLAY_SIDE
    outputs: str = json.dumps(list(OUTPUTS))
    labels: tuple[tuple[str, str], ...] = tuple(
        (o, "diagnosis (BCC)" if o == "bcc" else f"{o} {NAMES[o]}") for o in OUTPUTS)


def maps_view(cams, detected: Iterable[str] = (), view: Sequence[float] = (0.0, 0.0, 1.0, 1.0),
              untrained: Iterable[str] = ()) -> MapsView | None:
    """The eight Grad-CAM maps of a lesion (`cams` (8, h, w) raw) for the page to draw over the part of the
    picture the network saw (`view`, ``bcc.data.images.view_box``; 0 outside, as ``maps_on_picture``);
    None without maps."""
    if cams is None:
        return None
    return MapsView(maps_attribute(cams), json.dumps([round(float(v), 6) for v in view]), frozenset(detected),
                    frozenset(untrained))


@dataclass(frozen=True)
class PatternRow:
    """One code of a lesion as the ``pattern_table`` macro shows it."""

    code: str
    name: str
    p: float | None  # None: the head was never trained on this code
    on: bool         # detected (Thresholds.detect)

    @property
    def bar(self) -> int:
        return max(1, int((self.p or 0.0) * 80))


def pattern_rows(probs: Sequence[float | None], th: Thresholds) -> list[PatternRow]:
    """Each code's row from a lesion's `probs` (8, OUTPUTS order; NaN or None for an untrained head),
    detected as ``Thresholds.detect`` decides."""
    p = np.array([np.nan if v is None else float(v) for v in probs], dtype=np.float64)
    on = th.detect(p)[0]
    return [PatternRow(c, NAMES[c] + (" (negative criterion)" if c == "PN" else ""),
                       float(p[1 + j]) if np.isfinite(p[1 + j]) else None, bool(on[j]))
            for j, c in enumerate(CODES)]


@dataclass(frozen=True)
class Guarantee:
    """The model's sensitivity guarantee as a worklist states it (``bcc.deploy.triage.guarantee_status``)."""

    epsilon: float
    delta: float
    n_calibration: int
    n_bcc: int
    statement: str
    applies: bool = True
    why: str = ""

    @classmethod
    def read(cls, g: Any, source: str) -> Guarantee | None:
        """The guarantee a run recorded (None: the model had none); a malformed one is refused (BadInput
        naming `source` and the field), so no page has to guess."""
        if g is None:
            return None
        if not isinstance(g, Mapping):
            raise BadInput(f"{source}: guarantee is {type(g).__name__}, expected an object (what bcc.predict "
                           f"writes) or null; re-run bcc.predict")
        values: dict[str, Any] = {"applies": True, "why": ""}
        kinds = {"epsilon": float, "delta": float, "n_calibration": int, "n_bcc": int, "statement": str,
                 "applies": bool, "why": str}
        for key, kind in kinds.items():
            v = g.get(key, values.get(key))
            number = kind in (int, float) and isinstance(v, int | float) and not isinstance(v, bool)
            ok = isinstance(v, kind) if kind in (bool, str) else number and (kind is float or float(v).is_integer())
            if not ok or (kind is float and not 0 < v < 1) or (kind is int and v < 0):
                raise BadInput(f"{source}: guarantee.{key} = {v!r} is not a valid {kind.__name__}"
                               f"{' in (0, 1)' if kind is float else ''}; re-run bcc.predict")
            values[key] = kind(v)
        return cls(**values)


def _card(lesion, row: Mapping[str, Any], th: Thresholds) -> dict[str, Any]:
    rows = pattern_rows([float(row[f"p_{o}"]) for o in OUTPUTS], th)
    return {"rank": int(row["rank"]), "image": lesion.image, "uri": lesion.figures.get("image", ""),
            "bcc": row["diagnosis_verdict"] == "BCC", "diagnosis": row["diagnosis_verdict"],
            "p_bcc": float(row["p_bcc"]), "rule": row["rule_verdict"],
            "patterns": str(row.get("patterns") or "") or "none", "reasons": list(row["review_reason"]),
            "rows": rows, "note": row.get("note") or "",
            "maps": maps_view(lesion.cams, [r.code for r in rows if r.on], lesion.view,
                              [r.code for r in rows if r.p is None])}


def render_html(table: pd.DataFrame, lesions: Sequence, info: Mapping[str, Any]) -> str:
    """The page; `lesions` in the table's row order (``bcc.deploy.triage.worklist`` gives them so: two
    inputs may be shown under the same name, e.g. when their file names differ only in non-UTF-8 bytes).
    `info` holds what the run used (``run.json``); its thresholds are required once a lesion was scored."""
    is_ok = (table["status"] == "ok").to_numpy()
    ok, skipped = table[is_ok], table[~is_ok]
    th = Thresholds.from_dict(info["thresholds"], "the run's thresholds") if info.get("thresholds") or len(ok) else None
    stats = [("scored", len(ok), ""), ("likely BCC", int((ok["diagnosis_verdict"] == "BCC").sum()), "bcc"),
             ("flagged for review", int((ok["review"] == 1).sum()), "review"), ("skipped", len(skipped), "")]
    cards = [_card(les, r, cast(Thresholds, th))
             for les, r, keep in zip(lesions, table.to_dict("records"), is_ok, strict=True) if keep]
    pre = info.get("preprocess") or {}
    return ENV.get_template("report.html").render(
        model=info.get("model", "?"), input=info.get("input", "?"), th=th, explanations=info.get("explanations", ""),
        input_size=int(info.get("input_size") or 0), resize=pre.get("resize", "square"),
        colour=pre.get("colour", "none"), not_trained=list(info.get("not_trained") or []),
        g=Guarantee.read(info.get("guarantee"), "the run's guarantee"), stats=stats, cards=cards,
        skipped=skipped.to_dict("records"), draw_maps=True)


def write_report(path: str | Path, table: pd.DataFrame, lesions: Sequence, info: Mapping[str, Any]) -> Path:
    """Write the report atomically; `lesions` carry ``image`` and ``figures`` (``bcc.deploy.triage.Lesion``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(render_html(table, lesions, info), encoding="utf-8")
    return path
