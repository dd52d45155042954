"""When a photo was taken, from its EXIF, with the time zone the camera wrote.

DateTimeOriginal (when the shutter fired) with OffsetTimeOriginal; else
DateTime (last changed, often the same) with OffsetTime. A time without an
offset is read as UTC, so the calendar date shown is the camera's. A photo
without either has no date: pages say "No date" and sort it after dated ones,
rather than pretending it was taken on the day it was uploaded.
"""

from __future__ import annotations

import datetime as dt
import io
import re

from PIL import Image

EXIF_IFD = 0x8769
DATETIME, DATETIME_ORIGINAL = 0x0132, 0x9003
OFFSET_TIME, OFFSET_TIME_ORIGINAL = 0x9010, 0x9011
_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


def _text(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "ignore")
    return str(value or "").strip("\x00 ")


def parse_exif_datetime(value, offset=None) -> dt.datetime | None:
    """``"2021:07:14 18:03:51"`` plus ``"+02:00"`` as an aware datetime; None when unreadable."""
    text = _text(value)
    try:
        moment = dt.datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    if moment.year < 1900:
        return None
    match = _OFFSET.match(_text(offset))
    if match:
        sign = 1 if match.group(1) == "+" else -1
        minutes = int(match.group(2)) * 60 + int(match.group(3))
        if minutes < 24 * 60:
            return moment.replace(tzinfo=dt.timezone(sign * dt.timedelta(minutes=minutes)))
    return moment.replace(tzinfo=dt.timezone.utc)


def taken_at(data: bytes) -> dt.datetime | None:
    """When the photo in ``data`` was taken, or None when its EXIF does not say."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            exif = img.getexif()
            sub = exif.get_ifd(EXIF_IFD)
    except Exception:  # not an image, or EXIF Pillow cannot parse: no date
        return None
    return parse_exif_datetime(sub.get(DATETIME_ORIGINAL), sub.get(OFFSET_TIME_ORIGINAL)) or parse_exif_datetime(
        exif.get(DATETIME) or sub.get(DATETIME), sub.get(OFFSET_TIME)
    )
