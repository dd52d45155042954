"""Serving a stored video to its owner with HTTP range requests, so the browser can seek.

Django's ``FileResponse`` always sends the whole file; a ``<video>`` element
asks for ``Range: bytes=N-`` and needs a 206 answer to jump to "0:12". With S3
the presigned URL serves ranges itself.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.core.files.storage import default_storage
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseRedirect

CHUNK = 256 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def serve_video(request: HttpRequest, name: str, content_type: str = "video/mp4") -> HttpResponse:
    """The stored file ``name``, whole (200) or the one byte range asked for (206/416)."""
    if settings.AWS_STORAGE_BUCKET_NAME:
        response: HttpResponse = HttpResponseRedirect(default_storage.url(name))
        response["Cache-Control"] = "private, no-store"
        return response
    size = default_storage.size(name)
    span = byte_range(request.headers.get("Range", ""), size)
    handle = default_storage.open(name, "rb")
    if span is None:
        response = FileResponse(handle, content_type=content_type)
    elif span == (-1, -1):
        handle.close()
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
    else:
        start, end = span
        handle.seek(start)
        response = FileResponse(_limited(handle, end - start + 1), content_type=content_type, status=206)
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
        response["Content-Length"] = str(end - start + 1)
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """``(start, end)`` inclusive for a single ``bytes=`` range; None for none or one we ignore
    (several ranges: the whole file is a valid answer); ``(-1, -1)`` when it cannot be satisfied."""
    match = _RANGE.match(header.strip())
    if not match:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        length = int(last)
        if length == 0:
            return (-1, -1)
        return (max(0, size - length), size - 1)
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        return (-1, -1)
    return (start, end)


def _limited(handle, length: int):
    try:
        while length > 0:
            chunk = handle.read(min(CHUNK, length))
            if not chunk:
                break
            length -= len(chunk)
            yield chunk
    finally:
        handle.close()
