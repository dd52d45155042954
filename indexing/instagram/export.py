"""Read Instagram's "Download your information" ZIP (JSON format) without trusting it.

Where the posts are:
- ``your_instagram_activity/media/posts_N.json`` (current exports),
- ``your_instagram_activity/content/posts_N.json`` or ``content/posts_N.json`` (older),
possibly under one wrapping folder. Each post is ``{"media": [{"uri",
"creation_timestamp", "title"}, ...]}`` with a post-level ``title`` and
``creation_timestamp`` when it holds several media. ``uri`` is relative to the
export's root (``media/posts/202301/abc.jpg``; newer exports name files
``<media-id>.ext`` and put some single posts under ``media/other/``).

What we do about it:
- text is UTF-8 that Instagram wrote as Latin-1 code points (``"cafÃ©"``):
  repaired when the round trip works;
- images are recognised by their bytes (JPEG, PNG, WebP, HEIC...), never by
  name: videos, often without an extension, are counted and skipped;
- posts come out newest first (the JSON is not strictly ordered);
- a post's ``external_id`` is its first file's name when that is a numeric
  Instagram media id, else ``"export:" + sha256(first uri + "|" + timestamp)``
  (first 40 hex digits): stable across re-imports of the same export;
  ``RemotePhoto.external_id`` is the file's ``uri``;
- the archive is refused (``ExportError``) when it is not a ZIP, has no posts
  JSON, has more members than ``FACES_MAX_EXPORT_MEMBERS`` (50,000), an absolute
  or ``..`` member path, a posts JSON that is huge or a decompression bomb, or
  when the files we would read add up to more than ``FACES_MAX_EXPORT_BYTES``
  (4 GiB; videos are never decompressed and do not count). A single photo
  larger than ``FACES_MAX_UPLOAD_BYTES`` or compressed suspiciously well is
  skipped and counted.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import IO, Any

from django.conf import settings

from indexing.images import SUPPORTED_FORMATS, sniff_format
from indexing.sources import RemotePhoto, RemotePost, SourceError

from .export_json import (
    POSTS_HTML,
    POSTS_JSON,
    caption,
    media_items,
    newest_first,
    post_external_id,
    post_list,
    repair_text,
)

logger = logging.getLogger(__name__)

MAX_JSON_BYTES = 64 * 1024**2
MAX_RATIO = 100  # uncompressed/compressed; photos barely compress, JSON ~10x
RATIO_MIN_SIZE = 1024**2  # tiny members may compress well without harm
SNIFF_BYTES = 256 * 1024
HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"}

PathOrFile = str | os.PathLike | IO[bytes]


class ExportError(SourceError):
    """The file is not an Instagram export we can read; the message says why."""


@dataclass
class ExportStats:
    """What the export held, for the import summary."""

    posts_files: list[str] = field(default_factory=list)
    posts: int = 0  # posts yielded (including skipped ones)
    images: int = 0  # photos yielded
    non_images: int = 0  # referenced files that are not images (videos): skipped
    missing: int = 0  # referenced by a post but absent from the ZIP
    too_large: int = 0  # photos over the per-file cap, or suspiciously compressed
    unsafe: int = 0  # uris with absolute or ".." paths
    duplicates: int = 0  # posts listed twice
    damaged: int = 0  # files the ZIP cannot give back intact (bad CRC, broken deflate)


def _unsafe(name: str) -> bool:
    path = name.replace("\\", "/")
    return (
        path.startswith("/")
        or re.match(r"^[A-Za-z]:", path) is not None
        or "\x00" in path
        or any(part == ".." for part in path.split("/"))
    )


def _is_video_container(head: bytes) -> bool:
    """MP4/MOV (ISO base media) that is not HEIF: a video, whatever its name."""
    return len(head) >= 12 and head[4:8] == b"ftyp" and head[8:12] not in HEIF_BRANDS


class InstagramExport:
    """An opened, validated export ZIP. Use as a context manager.

    ``RemotePhoto.load`` reads from this archive; it reopens the ZIP if it was
    closed, as long as the path (or the caller's file object) is still there.
    """

    def __init__(
        self,
        source: PathOrFile,
        *,
        max_total_bytes: int | None = None,
        max_members: int | None = None,
        max_member_bytes: int | None = None,
        stats: ExportStats | None = None,
    ):
        self.source = source
        self.max_total_bytes = max_total_bytes or settings.FACES_MAX_EXPORT_BYTES
        self.max_members = max_members or settings.FACES_MAX_EXPORT_MEMBERS
        self.max_member_bytes = max_member_bytes or settings.FACES_MAX_UPLOAD_BYTES
        self.stats = stats if stats is not None else ExportStats()
        self._zip: zipfile.ZipFile | None = None
        self._zip = self._open()
        try:
            self.members = self._check_members(self._zip)
            self._entries = self._read_posts()
            self._check_total_size()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> InstagramExport:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    # Opening and validation -------------------------------------------------

    def _open(self) -> zipfile.ZipFile:
        try:
            if hasattr(self.source, "seek"):
                self.source.seek(0)
            return zipfile.ZipFile(self.source)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError):
            raise ExportError(
                "This file is not a ZIP archive. Upload the ZIP file Instagram sent you, unchanged."
            ) from None
        except OSError as exc:
            raise ExportError(f"The ZIP archive cannot be read ({exc.__class__.__name__}).") from None

    def _check_members(self, archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
        infos = archive.infolist()
        if len(infos) > self.max_members:
            raise ExportError(
                f"The ZIP holds {len(infos):,} files; at most {self.max_members:,} are accepted."
            )
        members: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            if _unsafe(info.filename):
                raise ExportError("The ZIP contains a file with an unsafe path (absolute or '..'); refused.")
            if info.is_dir() or info.filename.startswith("__MACOSX/"):
                continue
            members[info.filename.replace("\\", "/")] = info
        return members

    def _absurd_ratio(self, info: zipfile.ZipInfo) -> bool:
        if info.file_size < RATIO_MIN_SIZE:
            return False
        return info.compress_size <= 0 or info.file_size / info.compress_size > MAX_RATIO

    def _read_posts(self) -> list[tuple[str, dict]]:
        """(root, post) pairs from every posts JSON, in file order."""
        matches = ((POSTS_JSON.match(name), name) for name in self.members)
        found = sorted((m.group("root"), int(m.group("n")), name) for m, name in matches if m)
        if not found:
            if any(POSTS_HTML.search(name) for name in self.members):
                raise ExportError(
                    "This export is in HTML format. Request your information again from Instagram "
                    "and choose the JSON format."
                )
            raise ExportError(
                "No posts found in this ZIP (no posts_1.json). Use Instagram's "
                "\"Download your information\" export in JSON format, including your posts."
            )
        entries: list[tuple[str, dict]] = []
        for root, _n, name in found:
            info = self.members[name]
            if info.file_size > MAX_JSON_BYTES or self._absurd_ratio(info):
                raise ExportError(f"{name} is too large or suspiciously compressed; refused.")
            try:
                data = json.loads(self._read(name))
            except (ValueError, UnicodeDecodeError):
                raise ExportError(f"{name} is not valid JSON.") from None
            self.stats.posts_files.append(name)
            entries.extend((root, post) for post in post_list(data))
        return entries

    def _check_total_size(self) -> None:
        """Refuse before reading anything large: JSON plus every referenced file."""
        total = sum(self.members[name].file_size for name in self.stats.posts_files)
        seen: set[str] = set()
        for root, post in self._entries:
            for item in media_items(post):
                name = self._member_for(root, item.get("uri"))
                if name and name not in seen:
                    seen.add(name)
                    info = self.members[name]
                    if info.file_size <= self.max_member_bytes:
                        total += info.file_size
        if total > self.max_total_bytes:
            raise ExportError(
                f"The export's photos add up to {total / 1024**3:.1f} GiB; "
                f"at most {self.max_total_bytes / 1024**3:.1f} GiB can be imported at once."
            )

    # Reading ------------------------------------------------------------------

    def _read(self, name: str, limit: int | None = None) -> bytes:
        """A member's bytes; a damaged member raises ExportError, never zipfile's errors."""
        if self._zip is None:
            self._zip = self._open()
        try:
            with self._zip.open(self.members[name]) as handle:
                return handle.read(limit) if limit else handle.read()
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
            raise ExportError(f"{name} is damaged in the ZIP ({exc.__class__.__name__}).") from None
        except (NotImplementedError, RuntimeError):  # another compression method; encrypted
            raise ExportError(f"{name} is compressed or encrypted in a way we cannot read.") from None

    def read_member(self, name: str) -> bytes:
        """The whole member (what ``RemotePhoto.load`` returns)."""
        return self._read(name)

    def _member_for(self, root: str, uri: Any) -> str | None:
        if not isinstance(uri, str) or not uri:
            return None
        uri = uri.replace("\\", "/")
        if uri.startswith("./"):
            uri = uri[2:]
        if _unsafe(uri):
            return None
        for candidate in (root + uri, uri, root + repair_text(uri), repair_text(uri)):
            if candidate in self.members:
                return candidate
        return None

    def _image_format(self, name: str) -> str | None:
        info = self.members[name]
        head = self._read(name, SNIFF_BYTES)
        if _is_video_container(head):
            return None
        fmt = sniff_format(head)
        if fmt is None and info.file_size > len(head):
            # A JPEG with large metadata blocks needs more than the head.
            fmt = sniff_format(self._read(name))
        return fmt if fmt in SUPPORTED_FORMATS else None

    def iter_posts(self) -> Iterator[RemotePost]:
        """Every post, newest first; posts without a usable photo carry ``skip_reason``."""
        seen: set[str] = set()
        for timestamp, root, post, items in newest_first(self._entries):
            external_id = post_external_id(items, timestamp)
            if external_id in seen:
                self.stats.duplicates += 1
                continue
            seen.add(external_id)
            remote = RemotePost(
                external_id=external_id,
                caption=caption(post, items),
                timestamp=timestamp,
                media_type="CAROUSEL_ALBUM" if len(items) > 1 else "IMAGE",
            )
            videos = 0
            for item in items:
                uri = item.get("uri")
                if isinstance(uri, str) and _unsafe(uri.replace("\\", "/")):
                    self.stats.unsafe += 1
                    continue
                name = self._member_for(root, uri)
                if name is None:
                    self.stats.missing += 1
                    continue
                info = self.members[name]
                if info.file_size > self.max_member_bytes or self._absurd_ratio(info):
                    self.stats.too_large += 1
                    continue
                try:
                    fmt = self._image_format(name)
                except ExportError:
                    self.stats.damaged += 1  # one bad file does not spoil the export
                    continue
                if fmt is None:
                    self.stats.non_images += 1
                    videos += 1
                    continue
                self.stats.images += 1
                remote.photos.append(
                    RemotePhoto(
                        external_id=str(uri),
                        position=len(remote.photos),
                        load=partial(self.read_member, name),
                    )
                )
            if len(items) == 1 and videos:
                remote.media_type = "VIDEO"
            if not remote.photos:
                remote.skip_reason = (
                    "no photo in this post (video)"
                    if videos
                    else "the post's files are missing from the export"
                )
            self.stats.posts += 1
            yield remote


def iter_export_posts(path_or_file: PathOrFile, stats: ExportStats | None = None) -> Iterator[RemotePost]:
    """The posts of an export ZIP, newest first; fills ``stats`` as it goes.

    Validation happens on the first ``next()``: a bad archive raises
    ``ExportError`` then. Call each photo's ``load()`` while iterating (or at
    least while the path or file object still exists).
    """
    with InstagramExport(path_or_file, stats=stats) as export:
        yield from export.iter_posts()


def open_export(path_or_file: PathOrFile | bytes, **limits: int) -> InstagramExport:
    """Open and validate an export now (raises ``ExportError``), e.g. on upload."""
    if isinstance(path_or_file, (bytes, bytearray)):
        path_or_file = io.BytesIO(path_or_file)
    return InstagramExport(path_or_file, **limits)
