"""How a picture becomes the network's input (bcc.data.images.Preprocess) and where its maps land back."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from bcc.core.errors import BadInput
from bcc.data.cache import decoded_images
from bcc.data.folds import assign_folds
from bcc.data.images import Preprocess, network_view, resize_square, shades_of_grey, view_box, view_region
from bcc.explanation.gradcam import maps_on_picture, postprocess
from bcc.training.datamodule import EpochSeededSampler, balancing_weights


def _scene(w: int = 600, h: int = 450) -> np.ndarray:
    """A photograph-like picture: a dark disc (the lesion) on skin, with a colour gradient to tell left from right."""
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[..., 1] = (120 + 80 * xx / w).astype(np.uint8)
    rgb[..., 2] = 110
    disc = (xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (h / 4) ** 2
    rgb[disc] = (80, 40, 30)
    return rgb


def test_square_is_the_stretch_it_always_was():
    rgb = _scene()
    legacy = np.asarray(Image.fromarray(rgb).resize((32, 32), Image.Resampling.BILINEAR, reducing_gap=2.0))
    assert np.array_equal(network_view(rgb, 32), legacy)
    assert np.array_equal(resize_square(rgb, 32), legacy)


def test_crop_keeps_the_proportions_and_undoes_a_squeeze():
    assert view_box(600, 450, "crop") == (75.0, 0.0, 525.0, 450.0)  # the centre 450 x 450
    assert view_box(450, 600, "crop") == (0.0, 75.0, 450.0, 525.0)
    assert view_box(224, 224, "crop") == (0.0, 0.0, 224.0, 224.0)  # a square picture: all of it
    left, top, right, bottom = view_box(224, 224, "crop", aspect=4 / 3)  # a 4:3 picture squeezed to a square
    assert (top, bottom) == (0.0, 224.0) and right - left == pytest.approx(168.0) and left == pytest.approx(28.0)

    rgb = _scene()
    squeezed = np.asarray(Image.fromarray(rgb).resize((224, 224), Image.Resampling.LANCZOS))
    pre = Preprocess(64, "crop")
    true, copy = network_view(rgb, pre).astype(int), network_view(squeezed, pre, aspect=4 / 3).astype(int)
    assert np.abs(true - copy).mean() < 3  # the squeezed copy, unsqueezed, looks like the photograph
    stretched = network_view(squeezed, pre).astype(int)  # the squeeze kept: the disc is an ellipse
    assert np.abs(true - stretched).mean() > 3 * np.abs(true - copy).mean()
    disc = (true.sum(axis=2) < 200).sum()
    assert disc == pytest.approx(np.pi * 16 ** 2, rel=0.1)  # radius h/4 of the 64 px side: still round


def test_shades_of_grey_removes_a_colour_cast():
    rgb = _scene(120, 90)
    cast = np.clip(rgb * np.array([1.0, 0.8, 0.55]), 0, 255).astype(np.uint8)
    a, b = shades_of_grey(rgb).astype(float), shades_of_grey(cast).astype(float)
    # the same scene under two lights has the same colours after it (up to brightness: a dimmer light)
    assert np.abs(a / a.mean() - b / b.mean()).mean() < 0.03
    assert np.abs(rgb / rgb.mean() - cast / cast.mean()).mean() > 0.15
    p_means = np.power(np.mean(np.power(b, 6), axis=(0, 1)), 1 / 6)
    assert p_means.max() - p_means.min() < 0.05 * p_means.mean()  # grey in the Minkowski-6 sense
    assert np.array_equal(shades_of_grey(np.zeros((9, 9, 3), np.uint8)), np.zeros((9, 9, 3), np.uint8))


def test_a_bad_spec_is_refused_by_name():
    with pytest.raises(BadInput, match="resize='stretch'"):
        Preprocess(64, "stretch")
    with pytest.raises(BadInput, match="colour='grey_world'"):
        Preprocess(64, "crop", "grey_world")
    with pytest.raises(BadInput, match="image size 0"):
        Preprocess(0)
    assert Preprocess.of({"image_size": 96, "resize": "crop"}) == Preprocess(96, "crop")
    assert Preprocess.of(96) == Preprocess(96, "square", "none")


def test_maps_land_on_the_part_the_network_saw():
    cams = torch.rand(1, 8, 3, 3)
    pre = Preprocess(64, "crop")
    full = maps_on_picture(cams, (90, 120), pre)
    top, left, height, width = view_region((90, 120), pre)
    assert (top, left, height, width) == (0, 15, 90, 90)
    assert torch.equal(full[..., :, :15], torch.zeros(1, 8, 90, 15))
    assert torch.equal(full[..., :, 105:], torch.zeros(1, 8, 90, 15))
    assert torch.allclose(full[..., :, 15:105], postprocess(cams, (90, 90)))
    assert torch.equal(maps_on_picture(cams, (90, 120), Preprocess(64)), postprocess(cams, (90, 120)))


def test_the_cache_knows_the_preprocessing(tmp_path):
    Image.fromarray(_scene(80, 60)).save(tmp_path / "a.png")
    square = decoded_images(tmp_path, ["a.png"], Preprocess(32), disk_cache=True)
    crop = decoded_images(tmp_path, ["a.png"], Preprocess(32, "crop"), disk_cache=True)
    grey = decoded_images(tmp_path, ["a.png"], Preprocess(32, "crop", "shades_of_grey"), disk_cache=True)
    assert not np.array_equal(square, crop) and not np.array_equal(crop, grey)
    assert len(list((tmp_path / ".cache").glob("images-32px-*.npy"))) == 3
    assert np.array_equal(decoded_images(tmp_path, ["a.png"], 32, disk_cache=True), square)


def test_balanced_sampling_draws_the_rare_class_as_often_as_asked():
    y = np.array([1.0] * 40 + [0.0] * 960)
    for power, share in ((1.0, 0.5), (0.5, np.sqrt(0.04) / (np.sqrt(0.04) + np.sqrt(0.96))), (0.0, 0.04)):
        w = balancing_weights(y, power)
        drawn = torch.multinomial(torch.as_tensor(w), 20000, replacement=True, generator=torch.Generator().manual_seed(0))
        assert (drawn < 40).float().mean().item() == pytest.approx(share, abs=0.015)

    class _Items:
        def __len__(self):
            return len(y)

        def reseed(self, seed):
            pass

    sampler = EpochSeededSampler(_Items(), seed=3, weights=balancing_weights(y, 1.0))
    first = list(sampler)
    assert list(sampler) == first and len(first) == len(y)  # seeded by (seed, epoch): repeatable
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_folds_by_source_spread_each_sources_bcc():
    rng = np.random.default_rng(0)
    n = 600
    sources = pd.Series(np.where(np.arange(n) < 100, "small", "big"))
    bcc = np.zeros(n)
    bcc[rng.choice(100, 10, replace=False)] = 1  # 10 BCC in the small source
    bcc[100 + rng.choice(500, 25, replace=False)] = 1
    labels = pd.DataFrame({"bcc": bcc, **{c: np.nan for c in ("PN", "U", "ON", "MG", "ML", "SW", "AT")}})
    folds = assign_folds(labels, k=5, seed=0, sources=sources)
    small_bcc = pd.Series(folds[(sources == "small").to_numpy() & (bcc == 1)]).value_counts()
    assert sorted(small_bcc.tolist()) == [2, 2, 2, 2, 2]
    per_source = pd.crosstab(folds, sources)
    assert per_source["small"].between(19, 21).all()
