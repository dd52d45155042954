"""Small JPEGs cut from photos: face thumbnails for the gallery, previews for staff."""

from __future__ import annotations

from PIL import Image

from .engines.base import Box
from .images import decode_image, encode_jpeg

FACE_THUMB_SIZE = 160


def face_thumbnail(image: Image.Image, box: Box, size: int = FACE_THUMB_SIZE) -> bytes:
    """A square crop around the face with some margin, as JPEG."""
    width, height = image.size
    cx = (box.x + box.w / 2) * width
    cy = (box.y + box.h / 2) * height
    side = max(box.w * width, box.h * height) * 1.5
    left = max(0, int(cx - side / 2))
    top = max(0, int(cy - side / 2))
    right = min(width, int(cx + side / 2))
    bottom = min(height, int(cy + side / 2))
    crop = image.crop((left, top, max(right, left + 1), max(bottom, top + 1)))
    crop.thumbnail((size, size), Image.Resampling.LANCZOS)
    return encode_jpeg(crop, quality=85)


def small_preview(data: bytes, max_side: int = 320) -> bytes:
    return encode_jpeg(decode_image(data, max_side=max_side).image, quality=80)
