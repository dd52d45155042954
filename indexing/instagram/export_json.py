"""The posts JSON of an Instagram export: where it lies, its shapes, and what a post says.

Nothing here opens the ZIP (``export.py`` does, and decides which files are
photos); these functions read the JSON Instagram wrote, which is untrusted
too: any value may be missing, of the wrong type or out of range.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import PurePosixPath
from typing import Any

# The root is matched lazily, so "content/" inside "your_instagram_activity/" is not taken as the root.
POSTS_JSON = re.compile(
    r"^(?P<root>(?:.*?/)?)(?:your_instagram_activity/(?:media|content)/|content/)posts_(?P<n>\d+)\.json$"
)
POSTS_HTML = re.compile(r"(?:^|/)posts_\d+\.html$")
OLDEST = dt.datetime.min.replace(tzinfo=dt.timezone.utc)


def repair_text(text: str) -> str:
    """Undo Instagram's mojibake: UTF-8 bytes stored as Latin-1 code points."""
    if not text or text.isascii():
        return text
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def timestamp(value: Any) -> dt.datetime | None:
    """A Unix time as UTC datetime; None for anything else (NaN, year 10000, text)."""
    try:
        seconds = int(value)
        if seconds <= 0:
            return None
        return dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def post_list(data: Any) -> list[dict]:
    """Posts from a posts JSON: a list, or (some versions) a dict holding the list."""
    if isinstance(data, list):
        return [post for post in data if isinstance(post, dict)]
    if isinstance(data, dict):
        if "media" in data:
            return [data]
        posts: list[dict] = []
        for value in data.values():
            if isinstance(value, list):
                posts.extend(post for post in value if isinstance(post, dict) and "media" in post)
        return posts
    return []


def media_items(post: dict) -> list[dict]:
    """A post's ``media`` entries (one object or a list), objects only."""
    media = post.get("media")
    if isinstance(media, dict):
        media = [media]
    if not isinstance(media, list):
        return []
    return [item for item in media if isinstance(item, dict)]


def newest_first(entries: list[tuple[str, dict]]) -> list[tuple[dt.datetime | None, str, dict, list[dict]]]:
    """(timestamp, root, post, media items) for every post with media, newest first.

    The JSON is not strictly ordered; a post's own time wins over its first file's.
    """
    posts = []
    for root, post in entries:
        items = media_items(post)
        if items:
            when = timestamp(post.get("creation_timestamp")) or timestamp(items[0].get("creation_timestamp"))
            posts.append((when, root, post, items))
    posts.sort(key=lambda p: p[0] or OLDEST, reverse=True)
    return posts


def caption(post: dict, items: list[dict]) -> str:
    """The post's title, else its first file's, repaired."""
    return repair_text(str(post.get("title") or items[0].get("title") or ""))


def post_external_id(items: list[dict], when: dt.datetime | None) -> str:
    """The media id when the first file is named by it, else a stable hash (see ``export.py``)."""
    uri = str(items[0].get("uri") or "")
    stem = PurePosixPath(uri).stem
    if stem.isdigit() and len(stem) >= 8:
        return stem
    stamp = int(when.timestamp()) if when else 0
    digest = hashlib.sha256(f"{uri}|{stamp}".encode()).hexdigest()
    return f"export:{digest[:40]}"
