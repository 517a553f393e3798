"""The one image reader: how every part of bcc (training, Grad-CAM, Table 4, triage) reads a picture.

:func:`read_rgb` decodes a file to 8-bit RGB at its own resolution with the EXIF orientation applied
(a phone photo taken sideways is seen upright in training and in triage alike), CMYK, greyscale,
palette, alpha and 16-bit images converted, and refuses empty, unrecognised, corrupt, truncated or
oversized files with :class:`UnreadableImage` naming the reason. :func:`to_input` makes the network's
input from it: a square bilinear resize (antialiased, as the paper's framework does) scaled to [0, 1].
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from bcc.core.errors import BadInput

DEFAULT_IMAGE_SIZE = 224
IMAGE_SIZE = (16, 4096)  # the network input sides bcc trains and serves (data.image_size)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"II*\x00": "TIFF",
              b"MM\x00*": "TIFF", b"BM": "BMP"}


class UnreadableImage(BadInput):
    """A file that cannot be read as an image; the message is the reason (shown per file by triage)."""


def read_rgb(path: str | Path, max_megapixels: float | None = 100.0, frames_ok: bool = True) -> tuple[np.ndarray, str]:
    """``(RGB uint8 (H, W, 3), note)``: the image upright (EXIF orientation applied) at its own size.

    `note` says what was done to read it (format, mode, orientation, conversions; the first frame of an
    animation or multi-page file, which `frames_ok=False` refuses: a dataset image is one picture). Raises
    :class:`UnreadableImage` for an empty, unrecognised, corrupt or truncated file, one with more than
    `max_megapixels` (a decompression bomb) or an unsupported pixel format.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise UnreadableImage("empty file (0 bytes)")
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            w, h = im.size
            if max_megapixels is not None and w * h > max_megapixels * 1e6:
                raise UnreadableImage(f"image too large ({w}x{h} = {w * h / 1e6:.0f} megapixels > "
                                      f"max_megapixels={max_megapixels:g})")
            if getattr(im, "n_frames", 1) > 1:
                if not frames_ok:
                    raise UnreadableImage(f"an animated or multi-frame image ({im.n_frames} frames) where one picture "
                                          f"is expected")
                notes.append(f"first of {im.n_frames} frames")
            fmt, mode = im.format, im.mode
            im.load()
            if im.getexif().get(0x0112, 1) not in (1, None):
                notes.append("EXIF orientation applied")
            im = ImageOps.exif_transpose(im)
            rgb = _to_rgb(im, notes)
    except UnreadableImage:
        raise
    except Image.DecompressionBombError as e:
        raise UnreadableImage(f"image too large ({e})") from None
    except UnidentifiedImageError:
        kind = _signature(path)
        raise UnreadableImage(f"corrupt {kind} image (unreadable after its {kind} signature)" if kind
                              else "not an image (format not recognised)") from None
    except (OSError, SyntaxError, EOFError, ValueError) as e:  # what Pillow's decoders raise on bad data
        raise UnreadableImage(f"corrupt or truncated image ({e})") from None
    except MemoryError:
        raise UnreadableImage("image too large to decode in the memory available") from None
    except Exception as e:  # noqa: BLE001 — any other decoder failure: this file is unreadable
        raise UnreadableImage(f"could not be read ({type(e).__name__}: {e})") from None
    if min(rgb.shape[:2]) < 8:
        raise UnreadableImage(f"image too small ({rgb.shape[1]}x{rgb.shape[0]} pixels)")
    return np.ascontiguousarray(rgb, dtype=np.uint8), "; ".join([f"{fmt} {mode}"] + notes)


def _signature(path: Path) -> str | None:
    """The image format a file's first bytes announce (to tell a corrupt image from a non-image)."""
    with open(path, "rb") as f:
        head = f.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((kind for magic, kind in SIGNATURES.items() if head.startswith(magic)), None)


def _to_rgb(im: Image.Image, notes: list[str]) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im).astype(np.float64)
        bits = 16 if mode.startswith("I;16") or a.max() > 255 else 8
        a = np.clip(a / (257.0 if bits == 16 else 1.0), 0, 255)
        notes.append(f"{bits}-bit greyscale scaled to 8-bit")
        return np.repeat(np.round(a).astype(np.uint8)[..., None], 3, axis=2)
    if mode == "F":
        raise UnreadableImage("unsupported pixel format (32-bit float)")
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
    elif mode in ("L", "LA", "1"):
        notes.append("greyscale")
    elif mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        notes.append("alpha dropped")
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """(size, size, 3) uint8: bilinear, antialiased (PIL ``reducing_gap=2``); the network's view of an image."""
    im = Image.fromarray(rgb)
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(im, dtype=np.uint8)


def to_input(rgb: np.ndarray, size: int) -> torch.Tensor:
    """(3, size, size) float32 in [0, 1] from an (H, W, 3) uint8 RGB image: the network's input."""
    return torch.from_numpy(resize_square(rgb, size).copy()).permute(2, 0, 1).float().div_(255.0)


def read_image(path: str | Path, size: int = DEFAULT_IMAGE_SIZE) -> tuple[torch.Tensor, np.ndarray]:
    """``(input tensor (3, size, size) in [0, 1], RGB uint8 (H, W, 3))`` for one image file."""
    rgb, _ = read_rgb(path)
    return to_input(rgb, size), rgb


def shrink(rgb: np.ndarray, side: int) -> np.ndarray:
    """The image with its longest side at most `side` (LANCZOS), for display."""
    if max(rgb.shape[:2]) <= side:
        return rgb
    im = Image.fromarray(rgb)
    im.thumbnail((side, side), Image.Resampling.LANCZOS)
    return np.asarray(im)


def read_mask(path: str | Path) -> np.ndarray:
    """A mask file as a boolean array (any non-zero pixel is inside)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("L")) > 0
