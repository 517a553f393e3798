"""The report's dataset line says which masks a dataset has: PH2's whole-lesion masks are not pattern masks."""
from __future__ import annotations

from PIL import Image

from bcc.evaluation.agreement import format_dataset, summarise_dataset


def _dataset(root, masks):
    (root / "masks").mkdir(parents=True)
    (root / "images.csv").write_text("image_id,image\na,images/a.png\n")
    for name in masks:
        Image.new("L", (4, 4)).save(root / "masks" / name)
    return root


def test_lesion_masks_are_not_called_pattern_masks(tmp_path):
    line = format_dataset(summarise_dataset(_dataset(tmp_path / "ph2", ["a_lesion.png"]))).splitlines()[0]
    assert line.endswith("raters, no pattern masks, lesion masks present.")
    line = format_dataset(summarise_dataset(_dataset(tmp_path / "syn", ["a_AT.png"]))).splitlines()[0]
    assert line.endswith("raters, pattern masks present.")
