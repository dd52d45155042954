"""Photo dates from EXIF: DateTimeOriginal with its offset, else DateTime; no date is no date."""

from __future__ import annotations

import datetime as dt
import io

from PIL import Image

from indexing.photo_dates import parse_exif_datetime, taken_at


def jpeg(**tags) -> bytes:
    img = Image.new("RGB", (8, 8), "white")
    exif = Image.Exif()
    sub = exif.get_ifd(0x8769)
    for tag, value in tags.items():
        number = {"original": 0x9003, "offset_original": 0x9011, "offset": 0x9010}.get(tag)
        if number:
            sub[number] = value
        elif tag == "datetime":
            exif[0x0132] = value
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


def test_original_time_with_its_offset():
    moment = taken_at(jpeg(original="2021:07:14 18:03:51", offset_original="+02:00", datetime="2023:01:01 00:00:00"))
    assert moment == dt.datetime(2021, 7, 14, 16, 3, 51, tzinfo=dt.timezone.utc)
    assert moment.utcoffset() == dt.timedelta(hours=2)


def test_datetime_when_there_is_no_original():
    assert taken_at(jpeg(datetime="2019:12:31 23:30:00", offset="-05:00")) == dt.datetime(
        2020, 1, 1, 4, 30, tzinfo=dt.timezone.utc)
    assert taken_at(jpeg(datetime="2019:12:31 23:30:00")) == dt.datetime(2019, 12, 31, 23, 30, tzinfo=dt.timezone.utc)


def test_no_date_is_none():
    assert taken_at(jpeg()) is None
    assert taken_at(b"not an image") is None
    assert taken_at(jpeg(original="0000:00:00 00:00:00")) is None
    assert parse_exif_datetime("2020:02:30 10:00:00") is None
    assert parse_exif_datetime("2020:02:03 10:00:00", "+25:00").tzinfo == dt.timezone.utc  # nonsense offset ignored
