"""The one image reader: how every part of bcc (training, Grad-CAM, Table 4, triage) reads a picture.

:func:`read_rgb` decodes a file to 8-bit RGB at its own resolution with the EXIF orientation applied
(a phone photo taken sideways is seen upright in training and in triage alike), CMYK, greyscale,
palette, alpha and 16-bit images converted, and refuses empty, unrecognised, corrupt, truncated or
oversized files with :class:`UnreadableImage` naming the reason. :func:`network_view` makes the network's
view of it as a :class:`Preprocess` says — the one place a picture becomes the network's input, for
training's cache, evaluation, Grad-CAM and triage alike — and :func:`to_input` scales that view to [0, 1].

Why a preprocessing spec and not just a size: real dermoscopy mixes 4:3 photographs (HAM10000), square
crops (Derm7pt) and 1.37:1 frames (PH2). A square resize distorts each source differently, so lesion shape
becomes a cue for the source; ``resize="crop"`` keeps the proportions (centre square of the picture as it
was taken — ``aspect`` undoes a squeeze a distributed copy already applied). Colour constancy
(``colour="shades_of_grey"``) removes the camera's and light's colour cast, the other source cue the
literature reports. The spec travels in the checkpoint, so triage repeats exactly what training saw.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from bcc.core import settings
from bcc.core.errors import BadInput

DEFAULT_IMAGE_SIZE = 224
IMAGE_SIZE = settings.IMAGE_SIZE  # the network input sides bcc trains and serves (data.image_size's range)
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
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                if not frames_ok:
                    raise UnreadableImage(f"an animated or multi-frame image ({frames} frames) where one picture "
                                          f"is expected")
                notes.append(f"first of {frames} frames")
            fmt, mode = im.format, im.mode
            im.load()
            if im.getexif().get(0x0112, 1) not in (1, None):
                notes.append("EXIF orientation applied")
            rgb = _to_rgb(ImageOps.exif_transpose(im), notes)
    except UnreadableImage:
        raise
    except Image.DecompressionBombError as e:
        raise UnreadableImage(too_large(e, max_megapixels)) from None
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
    return np.ascontiguousarray(rgb, dtype=np.uint8), "; ".join([f"{fmt} {mode}", *notes])


def too_large(error: Exception, max_megapixels: float | None = 100.0) -> str:
    """Why a decompression bomb is refused: Pillow's words (its size and Pillow's limit) and bcc's limit."""
    ours = f"; bcc reads at most {max_megapixels:g} megapixels (max_megapixels)" if max_megapixels else ""
    return f"image too large ({error}{ours}): downscale it"


_QUARTER_TURNS = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def upright_size(path: str | Path) -> tuple[int, int]:
    """(width, height) as bcc reads the picture (EXIF orientation applied), from the header alone: Pillow
    opens lazily, so thousands of images are sized without decoding one. A decompression bomb (a header
    claiming more pixels than Pillow's limit) is an :class:`UnreadableImage` naming the file and the limit."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                return (h, w) if im.getexif().get(0x0112, 1) in _QUARTER_TURNS else (w, h)
    except Image.DecompressionBombError as e:
        raise UnreadableImage(f"{path}: {too_large(e, None)}") from None


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


RESIZE_MODES = ("square", "crop")
COLOUR_MODES = ("none", "shades_of_grey")
SIZE_RANGE = (8, 2048)


@dataclass(frozen=True)
class Preprocess:
    """How a picture becomes the network's (size, size) input; stored in the checkpoint's network spec.

    `resize`: ``square`` stretches the whole picture to a square (the paper's framework; fine when every
    picture has the same proportions); ``crop`` keeps the proportions: the centre square of the picture as
    taken (its ``aspect``, when a distributed copy was squeezed), resized in one step. `colour`: ``none``, or
    ``shades_of_grey`` colour constancy (Finlayson & Trezzi 2004, p = 6; the ISIC 2019 winners' choice).
    """

    size: int = DEFAULT_IMAGE_SIZE
    resize: str = "square"
    colour: str = "none"

    def __post_init__(self) -> None:
        low, high = SIZE_RANGE
        if not isinstance(self.size, int) or isinstance(self.size, bool) or not low <= self.size <= high:
            raise BadInput(f"image size {self.size!r}: give a whole number of pixels in [{low}, {high}]")
        if self.resize not in RESIZE_MODES:
            raise BadInput(f"resize={self.resize!r}: choose one of {list(RESIZE_MODES)}")
        if self.colour not in COLOUR_MODES:
            raise BadInput(f"colour={self.colour!r}: choose one of {list(COLOUR_MODES)}")

    @classmethod
    def of(cls, spec: Preprocess | int | Mapping) -> Preprocess:
        """From a Preprocess, a bare size (square, no colour change: what checkpoints before the spec meant)
        or a network spec / config mapping (``image_size``, ``resize``, ``colour``)."""
        if isinstance(spec, Preprocess):
            return spec
        if isinstance(spec, Mapping):
            return cls(int(spec.get("image_size") or DEFAULT_IMAGE_SIZE), str(spec.get("resize") or "square"),
                       str(spec.get("colour") or "none"))
        return cls(int(spec))

    def as_dict(self) -> dict:
        return asdict(self)


def view_box(width: int, height: int, resize: str = "square",
             aspect: float | None = None) -> tuple[float, float, float, float]:
    """``(left, top, right, bottom)`` in file pixels: the part of a `width` x `height` file the network sees.

    ``square``: all of it. ``crop``: the centre square of the picture as it was taken — `aspect` (its true
    width / height, when the file was squeezed) or the file's own proportions.
    """
    if resize == "square":
        return 0.0, 0.0, float(width), float(height)
    true_w = height * (aspect if aspect else width / height)  # the picture's width in units of file rows
    side = min(true_w, float(height))
    x_scale = width / true_w  # file columns per true column
    left = (true_w - side) / 2 * x_scale
    top = (height - side) / 2
    return left, top, left + side * x_scale, top + side


def view_region(shape: tuple[int, int], preprocess: Preprocess, aspect: float | None = None) -> tuple[int, int, int, int]:
    """``(top, left, height, width)``: :func:`view_box` rounded to whole pixels of an (H, W) image — where a
    map of the network's view lies on the picture (Grad-CAM overlays, Table 4's masks)."""
    left, top, right, bottom = view_box(shape[1], shape[0], preprocess.resize, aspect)
    t, lft = round(top), round(left)
    return t, lft, max(1, round(bottom) - t), max(1, round(right) - lft)


def shades_of_grey(rgb: np.ndarray, power: float = 6.0) -> np.ndarray:
    """Colour constancy: each channel scaled so that the picture's Minkowski p-mean is grey (uint8 in and out).

    p = 1 is grey world, p = inf white patch; 6 is the value Finlayson & Trezzi found best and the ISIC
    challenge winners used. No maintained library ships it (it is these few lines).
    """
    x = rgb.astype(np.float32)
    illuminant = np.power(np.mean(np.power(x, power), axis=(0, 1)), 1.0 / power)
    norm = float(np.linalg.norm(illuminant))
    if norm == 0.0:
        return rgb  # a black picture has no colour cast
    gains = 1.0 / (illuminant / norm * np.sqrt(3.0))
    return np.clip(x * np.where(np.isfinite(gains), gains, 1.0) + 0.5, 0, 255).astype(np.uint8)


def network_view(rgb: np.ndarray, preprocess: Preprocess | int, aspect: float | None = None) -> np.ndarray:
    """(size, size, 3) uint8: the picture as the network sees it — the :func:`view_box` resized in one
    bilinear, antialiased step (PIL ``reducing_gap=2``), then colour constancy when asked."""
    pre = Preprocess.of(preprocess)
    size = pre.size
    im = Image.fromarray(rgb)
    box = view_box(im.width, im.height, pre.resize, aspect)
    if im.size != (size, size) or box != (0.0, 0.0, float(size), float(size)):
        im = im.resize((size, size), Image.Resampling.BILINEAR, box=box, reducing_gap=2.0)
    out = np.asarray(im, dtype=np.uint8)
    return shades_of_grey(out) if pre.colour == "shades_of_grey" else out


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """(size, size, 3) uint8: the whole picture stretched to a square (``Preprocess(size)``'s view)."""
    return network_view(rgb, Preprocess(int(size)))


def to_input(rgb: np.ndarray, preprocess: Preprocess | int, aspect: float | None = None) -> torch.Tensor:
    """(3, size, size) float32 in [0, 1] from an (H, W, 3) uint8 RGB image: the network's input."""
    return torch.from_numpy(network_view(rgb, preprocess, aspect).copy()).permute(2, 0, 1).float().div_(255.0)


def read_image(path: str | Path, preprocess: Preprocess | int = DEFAULT_IMAGE_SIZE) -> tuple[torch.Tensor, np.ndarray]:
    """``(input tensor (3, size, size) in [0, 1], RGB uint8 (H, W, 3))`` for one image file."""
    rgb, _ = read_rgb(path)
    return to_input(rgb, preprocess), rgb


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
