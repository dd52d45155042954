"""Safe image decoding for every path that reads user or Instagram images.

Photos come from strangers: they may be empty, truncated, hostile (decompression
bombs), HEIC from an iPhone, CMYK, 16-bit or animated. Everything goes through
``decode_image`` which either returns an upright 8-bit RGB image or raises
``ImageError`` with a message a person can read.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from PIL import Image, UnidentifiedImageError

try:  # HEIC/HEIF (iPhone photos, newer Instagram exports)
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a pinned dependency
    pillow_heif = None

SUPPORTED_FORMATS = {"JPEG", "PNG", "WEBP", "HEIF", "GIF", "MPO", "BMP", "TIFF", "AVIF"}
EXTENSIONS = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "HEIF": "heic",
    "GIF": "gif",
    "BMP": "bmp",
    "TIFF": "tif",
    "AVIF": "avif",
}


# EXIF Orientation -> the transpose that makes the image upright (as ImageOps.exif_transpose).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageError(ValueError):
    """The bytes are not an image we can read; the message says why."""


@dataclass
class DecodedImage:
    image: Image.Image  # upright RGB, possibly reduced for speed
    width: int  # upright size of the original
    height: int
    format: str


def max_pixels() -> int:
    return int(settings.FACES_MAX_IMAGE_PIXELS)


def apply_pixel_limit() -> int:
    """Set Pillow's decompression-bomb guard to ``FACES_MAX_IMAGE_PIXELS``.

    ``decode_image`` checks the size itself, but other readers (EXIF dates,
    format sniffing, thumbnails, the staff preview) call ``Image.open``
    directly; with the guard set from our setting, Pillow warns above it and
    refuses above twice it everywhere in the process, whatever its default.
    Called once at start-up (``IndexingConfig.ready``) and when tests change
    the setting.
    """
    Image.MAX_IMAGE_PIXELS = max_pixels()
    return Image.MAX_IMAGE_PIXELS


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sniff_format(data: bytes) -> str | None:
    """The image format from the bytes themselves (never trust names), or None."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            return probe.format
    except Exception:
        return None


# Modes Image.reduce() works on; others are converted after scaling down.
_REDUCIBLE = {"L", "LA", "RGB", "RGBA", "I", "F", "CMYK"}


def decode_image(data: bytes, max_side: int | None = None, pixel_limit: int | None = None) -> DecodedImage:
    """Decode ``data`` into an upright RGB image no larger than ``max_side``.

    JPEGs are decoded at a reduced scale (``draft``) when ``max_side`` allows,
    which makes large photos several times cheaper to read. ``pixel_limit``
    bounds the pixels actually decoded (after ``draft``), so the memory a
    caller spends is at most about four bytes per allowed pixel: other
    formats are scaled down (``reduce``) right after decoding, before any
    conversion makes a second full-size copy.
    """
    if not data:
        raise ImageError("The file is empty.")
    if len(data) > settings.FACES_MAX_UPLOAD_BYTES:
        raise ImageError(
            f"The file is too large ({len(data) // (1024 * 1024)} MB; "
            f"the limit is {settings.FACES_MAX_UPLOAD_BYTES // (1024 * 1024)} MB)."
        )
    limit = max_pixels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or ""
            if fmt not in SUPPORTED_FORMATS:
                raise ImageError(f"Unsupported image format {fmt or 'unknown'}.")
            if img.width * img.height > limit:
                raise ImageError(
                    f"The image is too large ({img.width}x{img.height} pixels; "
                    f"the limit is {limit // 1_000_000} megapixels)."
                )
            orientation = _orientation(img)
            width, height = img.size
            if orientation in (5, 6, 7, 8):
                width, height = height, width
            if max_side and fmt in ("JPEG", "MPO") and max(img.size) > max_side:
                # draft() picks a DCT scale of 1/2, 1/4 or 1/8 at least max_side big.
                scale = max(img.size) / max_side
                img.draft("RGB", (int(img.width / scale), int(img.height / scale)))
            if pixel_limit and img.width * img.height > pixel_limit:
                raise ImageError(
                    f"The image has too many pixels ({img.width}x{img.height}; the limit here is "
                    f"{pixel_limit // 1_000_000} megapixels). Please use a smaller copy."
                )
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # animated GIF/WebP: the first frame stands for the image
            img.load()
            if max_side and img.mode.startswith("I;16") and max(img.size) >= 2 * max_side:
                img = img.convert("I")  # 16-bit grey: reduce() wants 32-bit integers
            if max_side and img.mode in _REDUCIBLE and max(img.size) >= 2 * max_side:
                img = img.reduce(max(img.size) // max_side)  # frees the full-size pixels
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        if isinstance(exc, UnidentifiedImageError):
            raise ImageError("This file is not an image we can read.") from None
        raise ImageError(
            f"The image is too large (over {limit // 1_000_000} megapixels; it could be a "
            "decompression bomb)."
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise ImageError(f"The image is damaged or truncated ({_short(exc)}).") from None

    img = _to_rgb(img)
    if orientation in _TRANSPOSE:
        img = img.transpose(_TRANSPOSE[orientation])
    if max_side and max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return DecodedImage(image=img, width=width, height=height, format=fmt)


def _short(exc: Exception) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text if len(text) <= 120 else text[:117].rstrip() + "..."


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1) or 1)
    except Exception:
        return 1


def _to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB from any mode: palette, alpha (on white), CMYK, grayscale, 16-bit."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float32)
        peak = 65535.0 if arr.max(initial=0) > 255 else 255.0
        gray = np.clip(arr * (255.0 / peak), 0, 255).astype("uint8")
        return Image.fromarray(gray, "L").convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        return Image.fromarray(np.clip(arr, 0, 255).astype("uint8"), "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def encode_jpeg(img: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=quality, optimize=False)
    return buffer.getvalue()


def shrink(pixels: np.ndarray, width: int, height: int) -> tuple[np.ndarray, float, float]:
    """Resize down to (width, height) fast and without aliasing; returns the x and y scales.

    Exact halvings (INTER_AREA by 2: OpenCV's fast path, unlike a general
    INTER_AREA) while a factor of 2 remains, then bilinear for the rest; each
    halving may drop a pixel at the right and bottom edges.
    """
    import cv2  # here, so that the many modules importing this one do not all load OpenCV

    h, w = pixels.shape[:2]
    halved = 1
    while w // 2 >= width and h // 2 >= height:
        w, h = w - w % 2, h - h % 2
        pixels = cv2.resize(pixels[:h, :w], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        w, h, halved = w // 2, h // 2, halved * 2
    if pixels.shape[:2] != (height, width):
        pixels = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_LINEAR)
    return pixels, width / (w * halved), height / (h * halved)
