"""A small client for the Instagram API with Instagram Login (graph.instagram.com).

It lists a professional account's media as ``RemotePost`` items, re-fetches
expired media URLs, downloads images and refreshes long-lived tokens. Every
answer that means "slow down" becomes ``RateLimited`` with a ``retry_after``,
code 190 becomes ``TokenExpired``; nothing here retries on its own, so the
crawler sees every rate limit and can schedule the resume. Media objects become
posts in ``media.py``; answers and error shapes are read by
``accounts.instagram.graph``, which login shares.

Tokens travel in query strings (``paging.next`` repeats them), so only
redacted URLs are ever logged.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import urllib3
from django.conf import settings

from accounts.instagram.graph import base_url, error_of, json_object
from faces_site.logging import redact
from indexing.sources import MediaExpired, RateLimited, RemotePost, SourceError, TokenExpired

from .media import COPYRIGHT_SKIP, MEDIA_FIELDS, image_url, to_post
from .sessions import plain_session

logger = logging.getLogger(__name__)

# Graph error codes that mean "too many calls": application, user, page, and
# per-hour (613) limits.
RATE_LIMIT_CODES = {4, 17, 32, 613}
TRANSIENT_CODES = {1, 2}  # "unknown error" / "service temporarily unavailable": try later
TOKEN_CODES = {190, 102}
USAGE_HEADERS = ("X-App-Usage", "X-Business-Use-Case-Usage")
DEFAULT_RETRY_AFTER = 600.0  # Meta's windows roll over an hour; ten minutes is a fair first wait.
DEFAULT_TIMEOUT = (5.0, 30.0)  # connect, read
FIRST_PAGE_SIZE = 25
DOWNLOAD_DEADLINE = 120.0  # seconds for one whole image, however slowly it trickles


class Unavailable(RateLimited):
    """Instagram is down or timed out (5xx, codes 1/2, network errors): resume later.

    A ``RateLimited`` subclass so the crawler's back-off path handles it; the
    type tells the two apart in logs.
    """


class SlowDownload(Unavailable):
    """The CDN hung or trickled: the photo did not arrive within the download deadline."""


class MediaDeleted(SourceError):
    """The media no longer exists on Instagram (deleted by its owner)."""


def usage_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait when a usage header reports any metric at 100% or more, else None.

    ``X-App-Usage`` is ``{"call_count": 28, "total_time": 25, "total_cputime": 25}``;
    ``X-Business-Use-Case-Usage`` maps an account id to a list of such objects,
    which may carry ``estimated_time_to_regain_access`` in minutes.
    """
    worst: float | None = None
    for name in USAGE_HEADERS:
        raw = headers.get(name)
        if not raw:
            continue
        try:
            data = json.loads(raw)
        except ValueError:
            continue
        entries: list[dict] = []
        if isinstance(data, dict) and any(isinstance(v, list) for v in data.values()):
            for value in data.values():
                if isinstance(value, list):
                    entries.extend(item for item in value if isinstance(item, dict))
        elif isinstance(data, dict):
            entries.append(data)
        for entry in entries:
            usage = max(
                (_number(entry.get(key)) for key in ("call_count", "total_time", "total_cputime")),
                default=0.0,
            )
            regain = _number(entry.get("estimated_time_to_regain_access")) * 60
            if usage >= 100 or regain > 0:
                wait = regain if regain > 0 else DEFAULT_RETRY_AFTER
                worst = max(worst or 0.0, wait)
    return worst


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _retry_after_header(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds > 0 else None


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
        self.max_download_bytes = max_download_bytes or settings.FACES_MAX_UPLOAD_BYTES
        self.session = session or plain_session()
        self.session.headers.setdefault("User-Agent", "Faces/1.0 (+instagram)")
        # Set when a usage header reached 100%: the next call would be refused,
        # so it is not sent (monotonic deadline, seconds).
        self.throttled_until: float = 0.0

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
        return base_url("INSTAGRAM_GRAPH_URL")

    # Public API -----------------------------------------------------------

    def iter_media(self, since: dt.datetime | None = None) -> Iterator[RemotePost]:
        """Every media of the account, newest first (``media_pages`` without the cursors).

        Instagram lists at most the 10,000 newest media. With ``since`` the
        listing stops at the first media posted at or before that moment,
        which makes an incremental sync cost one page when nothing changed.
        """
        for posts, _ in self.media_pages(since=since):
            yield from posts

    def media_pages(self, after: str = "", since: dt.datetime | None = None) -> Iterator[tuple[list[RemotePost], str]]:
        """The media listing one page at a time, from the page at cursor ``after``.

        Yields ``(posts, next_cursor)``; ``next_cursor`` is "" after the last
        page (or once ``since`` is reached). Keeping the cursor lets a crawl
        resume where it stopped without listing a page twice.
        """
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=dt.timezone.utc)
        while True:
            # A small first page lets indexing start sooner.
            limit = self.page_size if after else min(self.page_size, FIRST_PAGE_SIZE)
            params = {"fields": MEDIA_FIELDS, "limit": limit, **({"after": after} if after else {})}
            data = self._get_json(f"{self.graph_url}/me/media", params)
            items = [item for item in data.get("data") or [] if isinstance(item, dict)]
            posts = [to_post(item) for item in items]
            cursor = _next_cursor(data) if items else ""
            newer = [p for p in posts if since is None or p.timestamp is None or p.timestamp > since]
            if len(newer) < len(posts) or cursor == after:  # reached ``since``, or a cursor loop
                posts, cursor = newer, ""
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
        url = image_url(data)
        if not url:
            raise SourceError(f"Instagram has no image for media {media_id} ({COPYRIGHT_SKIP}).")
        return url

    def video_url(self, media_id: str) -> str:
        """A fresh, signed URL of a video media's MP4."""
        media_id = str(media_id)
        if not media_id.isdigit():
            raise ValueError(f"not an Instagram media id: {media_id!r}")
        data = self._get_json(f"{self.graph_url}/{media_id}", {"fields": "media_url,media_type"})
        if data.get("media_type") != "VIDEO" or not data.get("media_url"):
            raise SourceError(f"Instagram has no video for media {media_id}.")
        return str(data["media_url"])

    def download(self, url: str, deadline: float = DOWNLOAD_DEADLINE, max_bytes: int | None = None) -> bytes:
        """The bytes at a media URL, capped in size (``max_bytes``, else the client's) and in time
        (``deadline`` seconds in all).

        Signed CDN URLs expire: a 403 (plain text "URL signature expired") or
        404 raises ``MediaExpired``; call ``media_url()`` for a fresh one. A
        CDN that hangs or trickles past the deadline raises ``SlowDownload``.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SourceError("Instagram gave an unusable media URL.")
        where = f"{parts.netloc}{parts.path}"  # the signature stays out of logs
        limit = max_bytes or self.max_download_bytes
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
                wait = _retry_after_header(resp) or 60.0
                raise RateLimited("Instagram's media server asks us to slow down.", wait)
            if resp.status_code >= 500:
                raise Unavailable(f"Instagram's media server failed (HTTP {resp.status_code}).", 60.0)
            if resp.status_code != 200:
                raise SourceError(f"Could not download the photo (HTTP {resp.status_code}).")
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise SourceError(self._too_large(limit))
            chunks: list[bytes] = []
            size = 0
            slow = SlowDownload(f"The photo did not download within {deadline:g} s.", 60.0)
            try:
                # read1 returns what has arrived, so a trickle cannot hold a read past the deadline.
                while chunk := resp.raw.read1(64 * 1024, decode_content=True):
                    size += len(chunk)
                    if size > limit:
                        raise SourceError(self._too_large(limit))
                    if time.monotonic() > started + deadline:
                        raise slow
                    chunks.append(chunk)
            except (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError):
                raise slow from None
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
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

    def _too_large(self, limit: int) -> str:
        return f"The file is larger than {limit // (1024 * 1024)} MB."

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
                logger.warning("Instagram repeated a page; stopping: %s", redact(next_url))
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
            logger.warning("Instagram timed out: %s", redact(url))
            raise Unavailable("Instagram did not answer in time.", 60.0) from None
        except requests.RequestException as exc:
            logger.warning("Instagram unreachable (%s): %s", exc.__class__.__name__, redact(url))
            raise Unavailable(f"Could not reach Instagram ({exc.__class__.__name__}).", 60.0) from None
        logger.debug("GET %s -> %s", redact(resp.url or url), resp.status_code)
        wait = usage_retry_after(resp.headers)
        if resp.status_code != 200:
            self._raise_for_error(resp, wait)
        if wait is not None:
            # This answer is good; the next one would be refused.
            logger.info("Instagram usage at 100%%; pausing calls for %.0f s", wait)
            self.throttled_until = time.monotonic() + wait
        data = json_object(resp)
        if data is None:
            raise SourceError("Instagram sent an unreadable answer.")
        return data

    def _raise_for_error(self, resp: requests.Response, usage_wait: float | None) -> None:
        error = error_of(resp)
        code = error.code
        logger.warning("Instagram error %s at %s", error, redact(resp.url or ""))
        if code in TOKEN_CODES:
            raise TokenExpired("Instagram access expired or was revoked; please reconnect Instagram.")
        if resp.status_code == 429 or code in RATE_LIMIT_CODES:
            wait = _retry_after_header(resp) or usage_wait or DEFAULT_RETRY_AFTER
            self.throttled_until = time.monotonic() + wait
            raise RateLimited(f"Instagram rate limit reached (code {code or resp.status_code}).", wait)
        if resp.status_code >= 500 or code in TRANSIENT_CODES:
            raise Unavailable(f"Instagram is temporarily unavailable (HTTP {resp.status_code}).", 60.0)
        if code == 100 and error.subcode == 33:
            raise MediaDeleted("This media no longer exists on Instagram.")
        raise SourceError(f"Instagram refused the request: {redact(error.message)[:200] or resp.status_code}.")


def _next_cursor(data: dict) -> str:
    """The ``after`` cursor of the next page, or "" when this page is the last."""
    paging = data.get("paging") if isinstance(data.get("paging"), dict) else {}
    if not paging.get("next"):
        return ""
    found = parse_qs(urlsplit(str(paging["next"])).query).get("after")
    cursors = paging.get("cursors") if isinstance(paging.get("cursors"), dict) else {}
    return found[0] if found else str(cursors.get("after") or "")


def refresh_long_lived_token(token: str) -> tuple[str, int]:
    """A new 60-day token for a long-lived one that is at least a day old.

    Returns ``(new_token, expires_in_seconds)``; raises ``TokenExpired`` when
    the token already expired or the user revoked access.
    """
    with InstagramClient(token) as client:
        return client.refresh_token()
