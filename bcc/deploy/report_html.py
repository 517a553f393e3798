"""``report.html``: the triage worklist as one self-contained page (``bcc.deploy.triage`` writes it).

Everything is inside the file: images are base64 ``data:`` URIs, the style is inline, and a
Content-Security-Policy forbids any network request and any script but the one that draws the Grad-CAM
maps from their raw arrays (``bcc.deploy.maps_js``, allowed by its hash). A summary at the top (images
scored, likely BCC, flagged for review, skipped, thresholds, the model's sensitivity guarantee, model),
then one card per lesion in worklist order: the image, the verdicts, the review flag in words, every
pattern with its probability (detected ones marked), and the eight maps (diagnosis and each pattern).
Skipped inputs are listed at the end with the reason.

Every image written is re-encoded from decoded pixels (``Image.fromarray`` → JPEG with no ``exif=``,
``icc_profile=`` or comment), so no EXIF (GPS, dates, device, names), ICC profile, XMP, text chunk or
other metadata of the original file reaches the report. ``bcc.predict`` encodes the pictures while it
scores (:func:`lesion_figures`), so a long worklist never holds full-size pixels in memory.
"""
from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from bcc.core.io import atomic_path, printable
from bcc.core.patterns import CODES, NAMES, OUTPUTS
from bcc.deploy.maps_js import SCRIPT, csp_hash, maps_attribute

CARD_SIDE = 320     # lesion image, longest side in px
OVERLAY_SIDE = 160  # Grad-CAM maps, drawn by the page

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#1d2330;color:#fff;padding:16px 24px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:2px 0;font-size:13px;color:#c9cfdb}
.summary{display:flex;gap:12px;flex-wrap:wrap;padding:16px 24px}
.stat{background:#fff;border-radius:8px;padding:10px 16px;box-shadow:0 1px 2px #0002;min-width:120px}
.stat b{display:block;font-size:26px}.stat.bcc b{color:#b3261e}.stat.review b{color:#b26a00}
main{padding:0 24px 24px}
.card{background:#fff;border-radius:8px;box-shadow:0 1px 3px #0003;margin:14px 0;padding:14px;display:flex;
gap:16px;flex-wrap:wrap;align-items:flex-start;border-left:6px solid #2e7d32}
.card.bcc{border-left-color:#b3261e}.card.flag{outline:2px solid #f0a500}
.card img.lesion{width:320px;max-width:100%;height:auto;border-radius:4px;flex:none}
.info{flex:1;min-width:280px}.info h2{margin:0 0 6px;font-size:17px}
.verdict{font-weight:700}.verdict.bcc{color:#b3261e}.verdict.non{color:#2e7d32}
.flagtext{background:#fff4dc;border:1px solid #f0a500;border-radius:4px;padding:6px 8px;margin:8px 0;font-size:14px}
.ok{color:#555;font-size:13px}
table.pat{border-collapse:collapse;font-size:13px;margin-top:6px}
table.pat td{padding:2px 8px;border-bottom:1px solid #eee}table.pat tr.on{font-weight:700;background:#eef6ee}
.bar{display:inline-block;height:8px;background:#5b7bd5;border-radius:2px;vertical-align:middle}
.cams{display:flex;gap:8px;flex-wrap:wrap;width:100%}
figure{margin:0;text-align:center;font-size:12px;width:160px}figure canvas{width:160px;height:auto;border-radius:3px;display:block}
figure.on figcaption{font-weight:700}.guarantee{color:#fff}
.skipped{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 2px #0002}
.note{color:#666;font-size:12px}
"""


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


def _e(x: Any) -> str:
    """Text for the page: HTML-escaped, control and bidirectional characters shown escaped (``printable``)."""
    return html.escape(printable(str(x)), quote=True)


def _review_words(row: Mapping[str, Any]) -> str:
    if not int(row.get("review") or 0):
        return ('<p class="ok">No review flag: the diagnosis head and the clinical rule agree, and p(BCC) is '
                'clear of the uncertainty band.</p>')
    parts = [s.strip() for s in str(row["review_reason"]).split(";") if s.strip()]
    return ('<div class="flagtext"><b>Flagged for review:</b> ' + "; ".join(_e(p) for p in parts)
            + ". A dermatologist should look at this lesion before it is triaged.</div>")


def _pattern_table(row: Mapping[str, Any], th: Mapping[str, Any]) -> str:
    pt = dict(th.get("patterns") or {})
    rows = []
    for c in CODES:
        p = float(row[f"p_{c}"])
        if not np.isfinite(p):  # the model's head for this code was never trained on its label
            rows.append(f'<tr class="untrained"><td>{c}</td><td>{_e(NAMES[c])}'
                        f'{" (negative criterion)" if c == "PN" else ""}</td><td>–</td><td></td>'
                        f'<td>not trained</td></tr>')
            continue
        on = p >= float(pt.get(c, 0.5))
        rows.append(f'<tr class="{"on" if on else "off"}"><td>{c}</td><td>{_e(NAMES[c])}'
                    f'{" (negative criterion)" if c == "PN" else ""}</td><td>{p:.2f}</td>'
                    f'<td><span class="bar" style="width:{max(1, int(p * 80))}px"></span></td>'
                    f'<td>{"detected" if on else ""}</td></tr>')
    return '<table class="pat">' + "".join(rows) + "</table>"


def lesion_figures(rgb: np.ndarray) -> dict[str, str]:
    """The card's picture as a data URI: ``"image"``, longest side ``CARD_SIDE`` (the maps are drawn over it
    by the page)."""
    card = _fit(Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB"), CARD_SIDE)
    return {"image": data_uri(np.asarray(card), CARD_SIDE)}


def maps_html(cams, detected: Sequence[str] = (), view: Sequence[float] = (0.0, 0.0, 1.0, 1.0),
              untrained: Sequence[str] = ()) -> str:
    """The eight Grad-CAM maps of a lesion as canvases the page draws from the raw maps `cams` (8, h, w)
    over the part of the picture the network saw (`view`: left, top, right, bottom as fractions of it,
    ``bcc.data.images.view_box``; 0 outside, as ``maps_on_picture``); the outputs in `detected` are
    marked, those in `untrained` say so and are not drawn. Empty without maps."""
    if cams is None:
        return ""
    figs = []
    for name in OUTPUTS:
        label = "diagnosis (BCC)" if name == "bcc" else f"{name} {NAMES[name]}"
        if name in untrained:
            figs.append(f'<figure class="untrained"><figcaption>Grad-CAM: {_e(label)} — not trained</figcaption>'
                        "</figure>")
            continue
        on = name == "bcc" or name in detected
        cls = ' class="on"' if on else ""
        figs.append(f'<figure data-output="{name}"{cls}>'
                    f'<canvas role="img" aria-label="Grad-CAM {_e(label)}"></canvas>'
                    f"<figcaption>Grad-CAM: {_e(label)}{' (detected)' if on and name != 'bcc' else ''}"
                    "</figcaption></figure>")
    return (f'<div class="cams maps" data-side="{OVERLAY_SIDE}" data-outputs="{_e(json.dumps(list(OUTPUTS)))}" '
            f'data-view="{_e(json.dumps([round(float(v), 6) for v in view]))}" '
            f'data-maps="{_e(maps_attribute(cams))}">' + "".join(figs) + "</div>")


def _card(lesion, row: Mapping[str, Any], th: Mapping[str, Any]) -> str:
    bcc = row["diagnosis_verdict"] == "BCC"
    flag = int(row.get("review") or 0)
    pats = str(row.get("patterns") or "") or "none"
    rule = row["rule_verdict"]
    pt = dict(th.get("patterns") or {})
    detected = [c for c in CODES if float(row[f"p_{c}"]) >= float(pt.get(c, 0.5))]
    untrained = [c for c in CODES if not np.isfinite(float(row[f"p_{c}"]))]
    return (
        f'<section class="card{" bcc" if bcc else ""}{" flag" if flag else ""}" data-rank="{int(row["rank"])}" '
        f'data-case="{int(row["rank"])}">'
        f'<img class="lesion" alt="{_e(lesion.image)}" src="{lesion.figures.get("image", "")}">'
        f'<div class="info"><h2>#{int(row["rank"])} &nbsp;{_e(lesion.image)}</h2>'
        f'<div>Diagnosis head: <span class="verdict {"bcc" if bcc else "non"}">{_e(row["diagnosis_verdict"])}'
        f'</span> (p(BCC) = {float(row["p_bcc"]):.2f})</div>'
        f'<div>Clinical rule over the patterns: <span class="verdict {"bcc" if rule == "BCC" else "non"}">'
        f'{_e(rule)}</span></div><div>Detected patterns: {_e(pats)}</div>'
        f"{_review_words(row)}{_pattern_table(row, th)}"
        f'<p class="note">{_e(row.get("note") or "")}</p></div>'
        f"{maps_html(lesion.cams, detected, lesion.view, untrained)}"
        "</section>"
    )


def guarantee_html(g: Mapping[str, Any] | None) -> str:
    """The header's line on the sensitivity guarantee (``bcc.deploy.guarantee``), or that there is none."""
    if not g:
        return ('<p class="guarantee">Sensitivity guarantee: none (the model was exported without '
                'guarantee_data=; the operating threshold is an empirical point)</p>')
    words = (f"Sensitivity guarantee: ε = {float(g['epsilon']):g}, δ = {float(g['delta']):g}, calibration set of "
             f"{int(g['n_calibration'])} cases ({int(g['n_bcc'])} BCC) — {g['statement']}")
    if not g.get("applies", True):
        words += f". NOT IN FORCE for this worklist: {g['why']}"
    return f'<p class="guarantee" id="guarantee">{_e(words)}</p>'


def _input_words(info: Mapping[str, Any]) -> str:
    """What the model sees (its input size and preprocessing) and which of its outputs were never trained."""
    pre = info.get("preprocess") or {}
    text = ""
    if info.get("input_size"):
        text = (f"<p>Model input: {int(info['input_size'])} px, {_e(pre.get('resize', 'square'))} resize, colour "
                f"constancy {_e(pre.get('colour', 'none'))}: every image is reduced to this before it is scored.</p>")
    untrained = list(info.get("not_trained") or [])
    if untrained:
        text += (f'<p class="untrained-note">Not trained (the training data labelled none of them): '
                 f"{_e(', '.join(untrained))} — shown as “not trained”, never as findings, and left out of the "
                 f"clinical rule.</p>")
    return text


def render_html(table: pd.DataFrame, lesions: Sequence, info: Mapping[str, Any]) -> str:
    """The page; `lesions` in the table's row order (``bcc.deploy.triage.worklist`` gives them so: two
    inputs may be shown under the same name, e.g. when their file names differ only in non-UTF-8 bytes)."""
    th = dict(info.get("thresholds") or {})
    is_ok = (table["status"] == "ok").to_numpy()
    ok = table[is_ok]
    skipped = table[~is_ok]
    n_bcc = int((ok["diagnosis_verdict"] == "BCC").sum())
    n_flag = int((ok["review"] == 1).sum())
    stats = [("scored", len(ok), ""), ("likely BCC", n_bcc, "bcc"), ("flagged for review", n_flag, "review"),
             ("skipped", len(skipped), "")]
    summary = "".join(f'<div class="stat {c}"><b>{n}</b>{_e(label)}</div>' for label, n, c in stats)
    cards = "".join(_card(les, r, th) for les, r, keep in zip(lesions, table.to_dict("records"), is_ok, strict=True) if keep)
    skip_html = ""
    if len(skipped):
        items = "".join(f"<li><b>{_e(r['image'])}</b>: {_e(r['note'])}</li>" for r in skipped.to_dict("records"))
        skip_html = (f'<h2>Skipped inputs ({len(skipped)})</h2><div class="skipped" id="skipped"><ul>{items}</ul>'
                     f"</div>")
    pats = th.get("patterns") or {}
    th_text = (f"operating threshold p(BCC) ≥ {float(th.get('bcc', 0.5)):.2f}, uncertainty band "
               f"± {float(th.get('uncertainty_band', 0.1)):.2f}, pattern thresholds "
               + ", ".join(f"{c} {float(v):.2f}" for c, v in pats.items()) + f" — from {th.get('source', '?')}")
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        f"style-src 'unsafe-inline'; script-src {csp_hash()}\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>BCC triage worklist</title><style>{CSS}</style></head><body>"
        f"<header><h1>BCC triage worklist</h1><p>Model: {_e(info.get('model', '?'))}</p>"
        f"<p>Input: {_e(info.get('input', '?'))}</p><p>Thresholds: {_e(th_text)}</p>"
        f"<p>Grad-CAM: {_e(info.get('explanations', ''))}</p>{_input_words(info)}"
        f"{guarantee_html(info.get('guarantee'))}"
        "<p>Decision support only: ranked by p(BCC), highest first; every lesion still needs a clinician. "
        "Pictures are re-encoded from pixels: no EXIF, GPS, ICC or text metadata of the inputs is in this file.</p>"
        f'</header><div class="summary" id="summary">{summary}</div>'
        f"<main>{cards or '<p>No image could be scored.</p>'}{skip_html}</main><script>{SCRIPT}</script></body></html>"
    )


def write_report(path: str | Path, table: pd.DataFrame, lesions: Sequence, info: Mapping[str, Any]) -> Path:
    """Write the report atomically; `lesions` carry ``image`` and ``figures`` (``bcc.deploy.triage.Lesion``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(render_html(table, lesions, info), encoding="utf-8")
    return path
