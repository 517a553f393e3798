"""Embedded synthetic dermoscopy dataset: BCC patterns, four noisy raters, exact masks, counterfactual twins.

``generate(out, n=1559, size=256, seed=0, twins=False)`` writes a dataset directory that follows the
dataset contract (`docs/dataset.md`), so every consumer reads it exactly like a real one::

    out/
      images.csv       image_id,image,source         image = images/<image_id>.png
      annotations.csv  image_id,rater,PN,U,ON,MG,ML,SW,AT   4 raters x n rows, 1/0, blank = not rated
      truth.csv        image_id,PN,...,AT             the true 0/1 patterns the images were drawn from
      raters.csv       rater,code,sensitivity,specificity   parameters used to simulate each rater
      images/<image_id>.png
      masks/<image_id>_lesion.png                     every image: the lesion
      masks/<image_id>.png, masks/<image_id>_<CODE>.png   the segmented subset only, see below
      twins/<image_id>.png                            with ``twins``: the image without its patterns

It doubles as a benchmark for Grad-CAM localisation that no shortcut passes: the label is in the pattern
pixels only, and each mask is exactly the pixels its pattern painted (`docs/synthetic.md` lists the
guarantees and the tests that check them).

Labels (``sample_truth``)
    Counts follow the paper's Table 2 scaled to ``n`` (exact at n=1559): BCC 775 / non-BCC 784;
    PN 557, U 385, ON 333, MG 191, ML 244, SW 178, AT 455. PN is never drawn together with a BCC
    pattern; every BCC image has at least one BCC pattern; the remaining non-BCC images (784-557=227)
    form a nevus-like group with no pattern. BCC patterns co-occur through a latent subtype
    (pigmented BCC favours ON/MG/ML/SW, nodular/ulcerated favours AT/U). The BCC label is
    ``bcc.patterns.clinical_rule(truth)`` (no biopsy column is written).

Sources and devices (``sample_sources``, ``sample_devices``)
    ``source`` is one of ``centre_01``..``centre_06`` (simulated primary-care centres, each with its own
    device look: colour cast, gamma, blur, noise, vignetting, sometimes a dark dermatoscope aperture) or
    ``isic`` for a public-archive-like nevus subset (136 of the non-BCC images at n=1559, drawn 60 %
    from the no-pattern group and 40 % from the PN group). Centres are independent of the label. ``isic``
    implies non-BCC, as in the paper's data, so an isic image is shot with a centre's device drawn with
    the centres' weights: its look cannot give its label away.

Raters (``RATERS``, ``simulate_raters``)
    Four raters ``derm_1..derm_4`` rate every image. ``derm_4`` is clearly worse (sens/spec 0.70-0.75);
    the others lie in 0.85-0.95 and vary per code. ``derm_2`` leaves ~10 % of its cells blank.
    Errors are independent across raters and codes (the Dawid-Skene assumption) and are drawn with exact
    counts: among the cells a rater did rate, exactly ``round(sens * positives)`` true positives are
    marked 1 and ``round(spec * negatives)`` true negatives are marked 0 (which cells is random). The
    realised rates therefore equal ``raters.csv`` up to rounding, so an EM estimate can be checked
    against it tightly even for rare codes.

Images (``render``)
    Skin-toned background with smooth texture and illumination gradient; one irregular brownish lesion,
    its centre uniform within +-0.25 of the side from the image centre (radius 0.18-0.26 of the side,
    so it stays mostly in the frame). Each present pattern is painted anywhere on the lesion (a point
    drawn uniformly over its pixels): PN reticular brown network, U dark red-brown crust, ON blue-grey
    ovoids, MG clustered blue-grey globules, ML lobes at the lesion's rim, SW spokes around a dark hub,
    AT branching red vessels. Strokes, dots and vessels are at least 5 px wide at 256 px, so they keep
    >= 2 px at 128 px, the least a localisation run trains at. Size, contrast, position and colour vary per
    image, and a share of instances is faint (``FAINT_RATE``: 15 % for PN and AT, 35 % for SW, MG and
    ML, which are also smaller), so the rare codes are harder. Label-independent confounders of the same
    widths (brown dots, dotted and short linear vessels, a blood spot, a diffuse veil) resemble the
    patterns without being them, so the task is not trivial. Hairs, illumination and the device's look
    come last and work pixel by pixel (the device's blur softens each layer as it is drawn).

Masks and twins
    Every layer is painted through ``shapes.paint``: its soft shape is cut to zero below ``MASK_LEVEL``
    and what is left is its mask, so a pattern changes no pixel outside its mask (not even by rounding)
    and nearly every pixel inside it; faint instances keep their mask. ``masks/<id>_lesion.png`` is
    written for every image. The segmented subset, like the paper's 334 segmented images, is
    ``round(n * 334 / 1559)`` images drawn among the BCC images; for each, ``masks/<id>_<CODE>.png`` for
    every present pattern and ``masks/<id>.png`` as their union (uint8 0/255, the image's size,
    non-empty, inside the lesion). Consumers find the subset by file existence. With ``twins``,
    ``twins/<id>.png`` is the same image re-rendered without its patterns (same random streams): it
    differs from the image only inside the union of its pattern masks and equals it when there are none,
    so the evidence's effect can be measured (a deletion test). Twins are not listed in images.csv.

Determinism and atomicity
    Image ``i`` is drawn from ``np.random.default_rng([seed, i])`` given its labels and device; labels,
    sources, devices and rater noise from separate global streams. Every stage of an image (scene,
    confounders, each pattern, the finish) has its own sub-stream, so removing a pattern leaves the rest
    of the image unchanged. PNGs are written with fixed compression parameters and no metadata, CSVs with
    ``\\n`` line ends, so the same ``(n, size, seed)`` gives byte-identical files (whatever the number of
    workers, with or without twins). Everything is written into a temporary sibling directory that is
    renamed onto ``out`` only when complete; on error it is removed and an existing ``out`` is left as it
    was. An existing ``out`` is replaced.

Modules: ``labels`` (Table-2 truth, sources and devices, the segmented subset), ``raters`` (simulated
raters), ``shapes`` (drawing primitives, ``paint``), ``patterns`` (one drawer per code, confounders),
``rendering`` (one image and its twin), ``writer`` (the dataset directory), ``audit`` (the figures the
guarantees rest on: colour-shortcut AUROCs, stroke widths, coverage). CLI: ``python -m bcc.data.synthetic
--out DIR [--n 1559] [--size 256] [--seed 0] [--twins]``.
"""
from __future__ import annotations

from bcc.data.synthetic.rendering import render
from bcc.data.synthetic.writer import generate, summary

__all__ = ["generate", "render", "summary"]
