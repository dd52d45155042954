"""A small client for the Instagram API with Instagram Login (graph.instagram.com).

It lists a professional account's media as ``RemotePost`` items, re-fetches
expired media URLs, downloads images and refreshes long-lived tokens. Every
answer that means "slow down" becomes ``RateLimited`` with a ``retry_after``,
code 190 becomes ``TokenExpired``; nothing here retries on its own, so the
crawler sees every rate limit and can schedule the resume.

Tokens travel in query strings (``paging.next`` repeats them), so only
redacted URLs are ever logged.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import requests
import urllib3
from django.conf import settings

from faces_site.logging import redact
from indexing.instagram.answers import (
    DEFAULT_RETRY_AFTER,
    error_fields,
    loads,
    next_cursor,
    parse_timestamp,
    retry_after_header,
    safe_url,
    usage_retry_after,
)
from indexing.sources import (
    MediaExpired,
    RateLimited,
    RemotePhoto,
    RemotePost,
    SourceError,
    TokenExpired,
)

logger = logging.getLogger(__name__)

MEDIA_FIELDS = (
    "id,media_type,media_url,permalink,timestamp,caption,thumbnail_url,"
    "children{id,media_type,media_url,thumbnail_url}"
)
# Graph error codes that mean "too many calls": application, user, page, and
# per-hour (613) limits.
RATE_LIMIT_CODES = {4, 17, 32, 613}
TRANSIENT_CODES = {1, 2}  # "unknown error" / "service temporarily unavailable": try later
TOKEN_CODES = {190, 102}
DEFAULT_TIMEOUT = (5.0, 30.0)  # connect, read
DOWNLOAD_DEADLINE = 120.0  # seconds for one whole image, however slowly it trickles
COPYRIGHT_SKIP = "no media_url (copyright-flagged)"


class Unavailable(RateLimited):
    """Instagram is down or timed out (5xx, codes 1/2, network errors): resume later.

    A ``RateLimited`` subclass so the crawler's back-off path handles it; the
    type tells the two apart in logs.
    """


class SlowDownload(Unavailable):
    """The CDN hung or trickled: the photo did not arrive within the download deadline."""


class MediaDeleted(SourceError):
    """The media no longer exists on Instagram (deleted by its owner)."""


class InstagramClient:
    """Reads one Instagram professional account with its long-lived access token."""

    def __init__(
        self,
        access_token: str,
        *,
        page_size: int = 100,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        max_download_bytes: int | None = None,
        session: requests.Session | None = None,
    ):
        if not access_token:
            raise TokenExpired("Instagram is not connected (no access token).")
        self.access_token = access_token
        self.page_size = page_size
        self.timeout = timeout
        self.max_download_bytes = max_download_bytes or int(
            getattr(settings, "FACES_MAX_UPLOAD_BYTES", 25 * 1024 * 1024)
        )
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", "Faces/1.0 (+instagram)")
        # Set when a usage header reached 100%: the next call would be refused,
        # so it is not sent (monotonic deadline, seconds).
        self.throttled_until: float = 0.0
        self.requests_made = 0

    def __enter__(self) -> InstagramClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    def __repr__(self) -> str:  # never show the token
        return f"<InstagramClient graph={self.graph_url}>"

    @property
    def graph_url(self) -> str:
        return str(settings.INSTAGRAM_GRAPH_URL).rstrip("/")

    # Public API -----------------------------------------------------------

    def me(self) -> dict:
        """The account's ``id`` (app-scoped), ``user_id`` and ``username``."""
        return self._get_json(f"{self.graph_url}/me", {"fields": "id,user_id,username"})

    def iter_media(self, since: dt.datetime | None = None) -> Iterator[RemotePost]:
        """Every media of the account, newest first, following ``paging.next``.

        Instagram lists at most the 10,000 newest media. With ``since`` the
        listing stops at the first media posted at or before that moment,
        which makes an incremental sync cost one page when nothing changed.
        """
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=dt.timezone.utc)
        for item in self._iter_pages(MEDIA_FIELDS):
            post = self._to_post(item)
            if since is not None and post.timestamp is not None and post.timestamp <= since:
                return
            yield post

    def media_pages(
        self, after: str = "", since: dt.datetime | None = None
    ) -> Iterator[tuple[list[RemotePost], str]]:
        """The media listing one page at a time, from the page at cursor ``after``.

        Yields ``(posts, next_cursor)``; ``next_cursor`` is "" after the last
        page (or once ``since`` is reached). Keeping the cursor lets a crawl
        resume where it stopped without listing a page twice.
        """
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=dt.timezone.utc)
        while True:
            params = {"fields": MEDIA_FIELDS, "limit": self.page_size}
            if after:
                params["after"] = after
            data = self._get_json(f"{self.graph_url}/me/media", params)
            items = [item for item in data.get("data") or [] if isinstance(item, dict)]
            posts = [self._to_post(item) for item in items]
            cursor = next_cursor(data) if items else ""
            if since is not None:
                newer = [p for p in posts if p.timestamp is None or p.timestamp > since]
                if len(newer) < len(posts):
                    posts, cursor = newer, ""
            if cursor == after:  # a cursor loop would otherwise never end
                logger.warning("Instagram repeated a page cursor; stopping")
                cursor = ""
            yield posts, cursor
            if not cursor:
                return
            after = cursor

    def iter_media_ids(self) -> Iterator[str]:
        """The ids of all listed media: a cheap listing for noticing deleted posts."""
        for item in self._iter_pages("id"):
            if item.get("id"):
                yield str(item["id"])

    def media_url(self, media_id: str) -> str:
        """A fresh, signed URL of the image of a media (a video's cover image).

        Works for carousel children too (their ids are photo external ids).
        """
        media_id = str(media_id)
        if not media_id.isdigit():
            raise ValueError(f"not an Instagram media id: {media_id!r}")
        data = self._get_json(
            f"{self.graph_url}/{media_id}", {"fields": "media_url,thumbnail_url,media_type"}
        )
        url = self._image_url(data)
        if not url:
            raise SourceError(f"Instagram has no image for media {media_id} ({COPYRIGHT_SKIP}).")
        return url

    def download(self, url: str, deadline: float = DOWNLOAD_DEADLINE) -> bytes:
        """The bytes at a media URL, capped in size and in time (``deadline`` seconds in all).

        Signed CDN URLs expire: a 403 (plain text "URL signature expired") or
        404 raises ``MediaExpired``; call ``media_url()`` for a fresh one. A
        CDN that hangs or trickles past the deadline raises ``SlowDownload``.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SourceError("Instagram gave an unusable media URL.")
        where = f"{parts.netloc}{parts.path}"  # the signature stays out of logs
        started = time.monotonic()
        timeout = (min(self.timeout[0], deadline), min(self.timeout[1], deadline))
        try:
            resp = self.session.get(url, timeout=timeout, stream=True)
        except requests.Timeout:
            raise SlowDownload(f"Instagram's media server did not answer within {deadline:g} s.", 60.0) from None
        except requests.RequestException as exc:
            raise Unavailable(
                f"Could not reach Instagram's media server ({exc.__class__.__name__}).", 60.0
            ) from None
        with resp:
            if resp.status_code in (403, 404, 410):
                logger.info("media URL expired or gone (HTTP %s): %s", resp.status_code, where)
                raise MediaExpired(f"The media URL expired (HTTP {resp.status_code}).")
            if resp.status_code == 429:
                wait = retry_after_header(resp) or 60.0
                raise RateLimited("Instagram's media server asks us to slow down.", wait)
            if resp.status_code >= 500:
                raise Unavailable(f"Instagram's media server failed (HTTP {resp.status_code}).", 60.0)
            if resp.status_code != 200:
                raise SourceError(f"Could not download the photo (HTTP {resp.status_code}).")
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > self.max_download_bytes:
                raise SourceError(self._too_large())
            ends = started + deadline
            chunks: list[bytes] = []
            size = 0
            try:
                # read1 returns what has arrived, so a trickle cannot hold a read past the deadline.
                while chunk := resp.raw.read1(64 * 1024, decode_content=True):
                    size += len(chunk)
                    if size > self.max_download_bytes:
                        raise SourceError(self._too_large())
                    if time.monotonic() > ends:
                        raise SlowDownload(f"The photo did not download within {deadline:g} s.", 60.0)
                    chunks.append(chunk)
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                if isinstance(exc, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)):
                    raise SlowDownload(f"The photo did not download within {deadline:g} s.", 60.0) from None
                raise Unavailable(f"The download was interrupted ({exc.__class__.__name__}).", 60.0) from None
        logger.debug("downloaded %d bytes from %s", size, where)
        return b"".join(chunks)

    def refresh_token(self) -> tuple[str, int]:
        """Exchange this (at least a day old, unexpired) long-lived token for a new one."""
        data = self._get_json(
            f"{self.graph_url}/refresh_access_token", {"grant_type": "ig_refresh_token"}
        )
        token = data.get("access_token")
        if not token:
            raise SourceError("Instagram did not return a refreshed token.")
        return str(token), int(data.get("expires_in") or 0)

    # Internals ------------------------------------------------------------

    def _too_large(self) -> str:
        return f"The photo is larger than {self.max_download_bytes // (1024 * 1024)} MB."

    def _iter_pages(self, fields: str) -> Iterator[dict]:
        url: str | None = f"{self.graph_url}/me/media"
        params: dict | None = {"fields": fields, "limit": self.page_size}
        seen: set[str] = set()
        while url:
            data = self._get_json(url, params)
            items = data.get("data") or []
            yield from (item for item in items if isinstance(item, dict))
            paging = data.get("paging") or {}
            next_url = paging.get("next") if isinstance(paging, dict) else None
            if not next_url or not items:
                return
            self._check_same_host(next_url)
            if next_url in seen:  # a cursor loop would otherwise never end
                logger.warning("Instagram repeated a page; stopping: %s", safe_url(next_url))
                return
            seen.add(next_url)
            # paging.next already carries fields, limit, cursor and the token.
            url, params = next_url, None

    def _check_same_host(self, url: str) -> None:
        expected = urlsplit(self.graph_url)
        actual = urlsplit(url)
        if (actual.scheme, actual.netloc) != (expected.scheme, expected.netloc):
            raise SourceError("Instagram returned a paging link to another host; stopping.")

    def _get_json(self, url: str, params: dict | None) -> dict:
        now = time.monotonic()
        if self.throttled_until > now:
            raise RateLimited(
                "Instagram's usage limit is reached; waiting before the next call.",
                self.throttled_until - now,
            )
        if params is not None:
            params = {**params, "access_token": self.access_token}
        elif "access_token=" not in url:
            params = {"access_token": self.access_token}
        try:
            resp = self.session.get(url, params=params, timeout=self.timeout)
        except requests.Timeout:
            logger.warning("Instagram timed out: %s", safe_url(url))
            raise Unavailable("Instagram did not answer in time.", 60.0) from None
        except requests.RequestException as exc:
            logger.warning("Instagram unreachable (%s): %s", exc.__class__.__name__, safe_url(url))
            raise Unavailable(f"Could not reach Instagram ({exc.__class__.__name__}).", 60.0) from None
        self.requests_made += 1
        logger.debug("GET %s -> %s", safe_url(resp.url or url), resp.status_code)
        wait = usage_retry_after(resp.headers)
        if resp.status_code != 200:
            self._raise_for_error(resp, wait)
        if wait is not None:
            # This answer is good; the next one would be refused.
            logger.info("Instagram usage at 100%%; pausing calls for %.0f s", wait)
            self.throttled_until = time.monotonic() + wait
        try:
            data = loads(resp.text)
        except ValueError:
            raise SourceError("Instagram sent an unreadable answer.") from None
        if not isinstance(data, dict):
            raise SourceError("Instagram sent an unexpected answer.")
        return data

    def _raise_for_error(self, resp: requests.Response, usage_wait: float | None) -> None:
        code, subcode, kind, message = error_fields(resp)
        summary = f"{kind or 'error'} {code if code is not None else ''} (HTTP {resp.status_code}): {message}"
        logger.warning("Instagram error %s at %s", redact(summary)[:300], safe_url(resp.url or ""))
        if code in TOKEN_CODES:
            raise TokenExpired("Instagram access expired or was revoked; please reconnect Instagram.")
        if resp.status_code == 429 or code in RATE_LIMIT_CODES:
            wait = retry_after_header(resp) or usage_wait or DEFAULT_RETRY_AFTER
            self.throttled_until = time.monotonic() + wait
            raise RateLimited(f"Instagram rate limit reached (code {code or resp.status_code}).", wait)
        if resp.status_code >= 500 or code in TRANSIENT_CODES:
            raise Unavailable(f"Instagram is temporarily unavailable (HTTP {resp.status_code}).", 60.0)
        if code == 100 and subcode == 33:
            raise MediaDeleted("This media no longer exists on Instagram.")
        raise SourceError(f"Instagram refused the request: {redact(message)[:200] or resp.status_code}.")

    @staticmethod
    def _image_url(item: dict) -> str:
        """The image to index: the cover of a video, else the media itself."""
        if item.get("media_type") == "VIDEO":
            return str(item.get("thumbnail_url") or "")
        return str(item.get("media_url") or "")

    def _to_post(self, item: dict) -> RemotePost:
        media_id = str(item.get("id"))
        media_type = str(item.get("media_type") or "IMAGE")
        post = RemotePost(
            external_id=media_id,
            media_type=media_type if media_type in ("IMAGE", "VIDEO", "CAROUSEL_ALBUM") else "IMAGE",
            permalink=str(item.get("permalink") or ""),
            caption=str(item.get("caption") or ""),
            timestamp=parse_timestamp(item.get("timestamp")),
        )
        if media_type == "CAROUSEL_ALBUM":
            children = (item.get("children") or {}).get("data") or []
            for child in children:
                url = self._image_url(child)
                if child.get("id") and url:
                    post.photos.append(
                        RemotePhoto(external_id=str(child["id"]), position=len(post.photos), media_url=url)
                    )
            if not children and item.get("media_url"):
                # No children listed: the parent's media_url is the first image.
                post.photos.append(RemotePhoto(external_id=media_id, media_url=str(item["media_url"])))
        else:
            url = self._image_url(item)
            if url:
                post.photos.append(RemotePhoto(external_id=media_id, media_url=url))
        if not post.photos:
            has_video = media_type == "VIDEO" and item.get("media_url")
            post.skip_reason = "video without a cover image" if has_video else COPYRIGHT_SKIP
        return post


def refresh_long_lived_token(token: str) -> tuple[str, int]:
    """A new 60-day token for a long-lived one that is at least a day old.

    Returns ``(new_token, expires_in_seconds)``; raises ``TokenExpired`` when
    the token already expired or the user revoked access.
    """
    with InstagramClient(token) as client:
        return client.refresh_token()
