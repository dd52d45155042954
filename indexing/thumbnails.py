"""Small JPEGs cut from photos: face thumbnails for the gallery, previews for staff."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .engines.base import Box
from .images import decode_image, encode_jpeg, shrink

FACE_THUMB_SIZE = 160


def face_thumbnail(image: Image.Image | np.ndarray, box: Box, size: int = FACE_THUMB_SIZE) -> bytes:
    """A square crop around the face with some margin, as JPEG.

    ``image`` is a picture or its RGB pixels (what the local engine decoded).
    The crop is made small by exact halvings and one bilinear step
    (``images.shrink``), not a Lanczos filter over the whole crop: the same
    look at 160 px for a quarter of the time.
    """
    pixels = np.asarray(image)
    height, width = pixels.shape[:2]
    cx = (box.x + box.w / 2) * width
    cy = (box.y + box.h / 2) * height
    side = max(box.w * width, box.h * height) * 1.5
    left = max(0, int(cx - side / 2))
    top = max(0, int(cy - side / 2))
    right = min(width, int(cx + side / 2))
    bottom = min(height, int(cy + side / 2))
    crop = pixels[top : max(bottom, top + 1), left : max(right, left + 1)]
    scale = min(1.0, size / max(crop.shape[:2]))
    if scale < 1.0:
        crop, _, _ = shrink(crop, max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    return encode_jpeg(Image.fromarray(np.ascontiguousarray(crop)), quality=85)


def small_preview(data: bytes, max_side: int = 320) -> bytes:
    return encode_jpeg(decode_image(data, max_side=max_side).image, quality=80)
