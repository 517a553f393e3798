"""Embedded synthetic dermoscopy dataset: BCC patterns, four noisy raters, masks.

``generate(out, n=1559, size=256, seed=0)`` writes a dataset directory that follows the dataset
contract (`docs/dataset.md`), so every consumer reads it exactly like a real one::

    out/
      images.csv       image_id,image,source         image = images/<image_id>.png
      annotations.csv  image_id,rater,PN,U,ON,MG,ML,SW,AT   4 raters x n rows, 1/0, blank = not rated
      truth.csv        image_id,PN,...,AT             the true 0/1 patterns the images were drawn from
      raters.csv       rater,code,sensitivity,specificity   parameters used to simulate each rater
      images/<image_id>.png
      masks/<image_id>.png, masks/<image_id>_<CODE>.png   (XAI subset only, see below)

Labels (``sample_truth``)
    Counts follow the paper's Table 2 scaled to ``n`` (exact at n=1559): BCC 775 / non-BCC 784;
    PN 557, U 385, ON 333, MG 191, ML 244, SW 178, AT 455. PN is never drawn together with a BCC
    pattern; every BCC image has at least one BCC pattern; the remaining non-BCC images (784-557=227)
    form a nevus-like group with no pattern. BCC patterns co-occur through a latent subtype
    (pigmented BCC favours ON/MG/ML/SW, nodular/ulcerated favours AT/U). The BCC label is
    ``bcc.patterns.clinical_rule(truth)`` (no biopsy column is written).

Sources
    ``source`` is one of ``centre_01``..``centre_06`` (simulated primary-care centres, each with its own
    device look: colour cast, gamma, focus, noise, vignetting, sometimes a dark dermatoscope aperture) or
    ``isic`` for a public-archive-like nevus subset (136 of the non-BCC images at n=1559, drawn 60 %
    from the no-pattern group and 40 % from the PN group). Centres are independent of the label; ``isic``
    implies non-BCC, as in the paper's data.

Raters (``RATERS``, ``simulate_raters``)
    Four raters ``derm_1..derm_4`` rate every image. ``derm_4`` is clearly worse (sens/spec 0.70-0.75);
    the others lie in 0.85-0.95 and vary per code. ``derm_2`` leaves ~10 % of its cells blank.
    Errors are independent across raters and codes (the Dawid-Skene assumption) and are drawn with exact
    counts: among the cells a rater did rate, exactly ``round(sens * positives)`` true positives are
    marked 1 and ``round(spec * negatives)`` true negatives are marked 0 (which cells is random). The
    realised rates therefore equal ``raters.csv`` up to rounding, so an EM estimate can be checked
    against it tightly even for rare codes.

Images (``render``)
    Skin-toned background with smooth texture, illumination gradient, vignetting and random hairs; one
    irregular brownish lesion with varying size, position and colour; each present pattern is drawn as
    a localized texture inside the lesion with its own mask: PN reticular brown network, U dark
    red-brown crust, ON blue-grey ovoids, MG clustered small blue-grey globules, ML peripheral leaf-like
    lobes, SW radial spokes around a dark hub, AT branching red vessels. Size, contrast, position and
    colour vary per image, and a share of instances is faint (``FAINT_RATE``: 15 % for PN and AT, 35 %
    for SW, MG and ML, which are also smaller), so the rare codes are harder. Label-independent
    confounders (brown dots, dotted and short linear vessels, a small blood spot, a diffuse blue-grey
    veil) resemble the patterns without being them, so the task is not trivial. Every stage of an image
    (background and lesion, confounders, each pattern, hairs and device) has its own random sub-stream:
    removing one pattern from the label vector leaves the rest of the image unchanged.

Masks
    Written only for the XAI subset, like the paper's 334 segmented images: ``round(n * 334 / 1559)``
    images drawn at random among the images with at least one true pattern (BCC images and PN images).
    For each such image, ``masks/<id>_<CODE>.png`` for every present pattern and ``masks/<id>.png``
    as their union; uint8 0/255, same size as the image, always non-empty and inside the lesion.
    Consumers find the subset by file existence.

Determinism and atomicity
    Image ``i`` is drawn from ``np.random.default_rng([seed, i])`` given its labels; labels, sources and
    rater noise from a separate global stream. PNGs are written with fixed compression parameters and no
    metadata, CSVs with ``\\n`` line ends, so the same ``(n, size, seed)`` gives byte-identical files
    (whatever the number of workers). Everything is written into a temporary sibling directory that is
    renamed onto ``out`` only when complete; on error it is removed and an existing ``out`` is left as
    it was. An existing ``out`` is replaced.

Modules: ``labels`` (Table-2 truth, sources, the segmented subset), ``raters`` (simulated raters),
``shapes`` (drawing primitives), ``patterns`` (one drawer per code, confounders), ``rendering`` (one
image), ``writer`` (the dataset directory). CLI: ``python -m bcc.data.synthetic --out DIR [--n 1559]
[--size 256] [--seed 0]``.
"""
from __future__ import annotations

from bcc.data.synthetic.rendering import render
from bcc.data.synthetic.writer import generate, summary

__all__ = ["generate", "render", "summary"]
