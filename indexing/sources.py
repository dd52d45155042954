"""What every source yields to the crawler: posts with their photos.

Instagram's Graph API, an export ZIP and uploaded photos all reduce to
``RemotePost`` items, so ``crawl_source`` has one path for all of them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class RemotePhoto:
    """One image or video of a post.

    ``media_url`` is set for Instagram (downloaded by ``index_post``, re-fetched
    by media id when expired); ``load`` returns the bytes for ZIP and upload
    sources, which are stored while crawling.
    """

    external_id: str
    position: int = 0
    media_url: str = ""  # the image; for a video its cover (may be empty)
    load: Callable[[], bytes] | None = None  # the image's bytes, or the video's for a video
    kind: str = "image"  # "image" | "video"
    video_url: str = ""  # Instagram videos: the MP4, downloaded when indexed


@dataclass
class RemotePost:
    external_id: str
    media_type: str = "IMAGE"  # IMAGE | CAROUSEL_ALBUM | VIDEO
    permalink: str = ""
    caption: str = ""
    timestamp: dt.datetime | None = None
    photos: list[RemotePhoto] = field(default_factory=list)
    skip_reason: str = ""  # e.g. "no media_url (copyright-flagged)"


class SourceError(Exception):
    """The source cannot be read; the message is safe to show to the user."""


class RateLimited(SourceError):
    """The upstream API asks us to slow down; resume after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float = 60.0):
        super().__init__(message)
        self.retry_after = retry_after


class TokenExpired(SourceError):
    """The access token expired or was revoked: the user must reconnect."""


class MediaExpired(SourceError):
    """A signed media URL expired (HTTP 403/404 from the CDN); fetch a fresh one."""
