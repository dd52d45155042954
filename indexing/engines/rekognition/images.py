"""Images as Rekognition takes them, and its boxes and face details as ours.

Rekognition reads JPEG and PNG only, at most 5 MB as bytes (15 MB from S3)
and at least 80 px a side (docs.aws.amazon.com/rekognition/latest/dg/limits.html):
anything else is re-encoded here first.
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.storage import default_storage
from PIL import Image
from storages.backends.s3 import S3Storage
from storages.utils import clean_name

from ...images import DecodedImage, ImageError, decode_image, encode_jpeg
from ..base import Box, EngineError

MAX_BYTES = 5 * 1024 * 1024  # image passed as bytes
MAX_S3_BYTES = 15 * 1024 * 1024  # image read from S3
MIN_SIDE = 80  # smallest width/height Rekognition accepts
MAX_SIDE = 4096  # what we downscale oversized images to before re-encoding
NATIVE_FORMATS = {"JPEG", "MPO", "PNG"}  # the only formats Rekognition reads
QUERY_CROP_MARGIN = 0.6  # of the face size, on each side, when cropping one query face


def storage_s3_key(name: str) -> str | None:
    """The S3 key of a file saved through ``default_storage``; None unless storage is S3.

    ``index_image(..., storage_key=...)`` turns the stored original's name into
    this key so Rekognition reads the photo from the bucket instead of
    receiving its bytes.
    """
    if not name or not settings.AWS_STORAGE_BUCKET_NAME:
        return None
    if not isinstance(default_storage, S3Storage):
        return None
    if default_storage.bucket_name != settings.AWS_STORAGE_BUCKET_NAME:
        return None
    return default_storage._normalize_name(clean_name(name))


def decode(data: bytes, max_side: int | None = 1024) -> DecodedImage:
    """``decode_image``, with unreadable bytes as an ``EngineError``."""
    try:
        return decode_image(data, max_side=max_side)
    except ImageError as exc:
        raise EngineError(str(exc)) from None


def fits_as_is(data: bytes, decoded: DecodedImage, limit: int) -> bool:
    return (
        decoded.format in NATIVE_FORMATS
        and len(data) <= limit
        and min(decoded.width, decoded.height) >= MIN_SIDE
    )


def api_bytes(data: bytes, decoded: DecodedImage) -> bytes:
    """The image as Rekognition accepts it: JPEG or PNG, at most 5 MB, at least 80 px.

    The original goes as is when it qualifies (EXIF orientation included:
    Rekognition applies it, so boxes come back upright like ours).
    Otherwise an upright JPEG re-encode, downscaled until it fits.
    """
    if fits_as_is(data, decoded, MAX_BYTES):
        return data
    return fit_jpeg(decode(data, max_side=MAX_SIDE).image)


def image_param(data: bytes, decoded: DecodedImage, s3_key: str | None) -> dict:
    """The ``Image`` parameter: the S3 object when it can be read from there, else bytes."""
    bucket = settings.AWS_STORAGE_BUCKET_NAME
    if s3_key and bucket and fits_as_is(data, decoded, MAX_S3_BYTES):
        return {"S3Object": {"Bucket": bucket, "Name": s3_key}}
    return {"Bytes": api_bytes(data, decoded)}


def fit_jpeg(image: Image.Image) -> bytes:
    """Encode ``image`` as a JPEG Rekognition takes as bytes (<= 5 MB, >= 80 px)."""
    if min(image.size) < MIN_SIDE:
        scale = MIN_SIDE / min(image.size)
        image = image.resize(
            (max(MIN_SIDE, round(image.width * scale)), max(MIN_SIDE, round(image.height * scale))),
            Image.Resampling.BICUBIC,
        )
    quality = 90
    while True:
        data = encode_jpeg(image, quality=quality)
        if len(data) <= MAX_BYTES:
            return data
        if quality > 70:
            quality -= 10
        else:
            image = image.resize((int(image.width * 0.75), int(image.height * 0.75)), Image.Resampling.BILINEAR)


def crop_face(image: Image.Image, box: Box) -> bytes:
    """One face of the query with a margin, so SearchFacesByImage sees only it."""
    width, height = image.size
    margin_x, margin_y = box.w * QUERY_CROP_MARGIN, box.h * QUERY_CROP_MARGIN
    left = max(0, int((box.x - margin_x) * width))
    top = max(0, int((box.y - margin_y) * height))
    right = min(width, int((box.x + box.w + margin_x) * width) + 1)
    bottom = min(height, int((box.y + box.h + margin_y) * height) + 1)
    return fit_jpeg(image.crop((left, top, max(right, left + 1), max(bottom, top + 1))))


# --------------------------------------------------------------------------
# What Rekognition returns about faces


def box(bounding_box: dict | None) -> Box:
    """Rekognition's BoundingBox, clipped to the image (it can reach past the edges)."""
    bb = bounding_box or {}
    left, top = float(bb.get("Left", 0.0)), float(bb.get("Top", 0.0))
    width, height = float(bb.get("Width", 0.0)), float(bb.get("Height", 0.0))
    x, w = _clip(left, width)
    y, h = _clip(top, height)
    return Box(x=x, y=y, w=w, h=h)


def _clip(start: float, size: float) -> tuple[float, float]:
    """One axis of a box kept inside [0, 1]; untouched (no float noise) when already inside."""
    if 0.0 <= start and start + size <= 1.0:
        return start, size
    low = min(max(start, 0.0), 1.0)
    return low, max(0.0, min(start + size, 1.0) - low)


def quality(detail: dict, fallback: float) -> float:
    """Sharpness is what decides whether a face is worth showing; fall back to confidence."""
    measured = detail.get("Quality") or {}
    for key in ("Sharpness", "Brightness"):
        if key in measured:
            return float(measured[key])
    return float(fallback)


def landmarks(detail: dict) -> list[list[float]]:
    return [
        [round(float(point.get("X", 0.0)), 5), round(float(point.get("Y", 0.0)), 5)]
        for point in detail.get("Landmarks") or []
    ]
