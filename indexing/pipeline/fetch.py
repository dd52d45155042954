"""Concurrent downloads for index jobs: many photos in flight, a bounded number in memory.

An index job hands over the photos of its posts; a thread pool downloads them
(Instagram CDN, a fresh ``media_url`` from the Graph API when a signed URL
expired, or the stored original from ``default_storage``) and stores new
originals, while the job's thread feeds what has arrived to the engine. The
job thread is the only one that touches the database: a ``Fetched`` carries
what to record.

Memory is bounded by ``window``: downloads are submitted only while fewer than
``window`` photos are in flight or waiting for the engine, whatever the size
of the job. The HTTP connections outlive the job (``download_session``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import requests
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from .. import storage
from ..crawlers import instagram_client
from ..images import ImageError, sha256, sniff_format
from ..instagram.client import SlowDownload, Unavailable
from ..instagram.sessions import plain_session
from ..models import Photo, Post, Source
from ..sources import MediaExpired, RateLimited, SourceError, TokenExpired

logger = logging.getLogger(__name__)

# Back-off between tries when the CDN answers 5xx or drops the connection.
RETRY_DELAYS = (0.5, 1.0, 2.0)


@dataclass
class Fetched:
    """One photo's bytes, or why there are none.

    ``error`` fails this photo alone; ``exc`` (rate limit, revoked token) is
    the job's business. ``stored``/``digest`` name a newly stored original and
    ``media_url`` a fresh signed URL, for the job thread to record.
    """

    post: Post
    photo: Photo
    data: bytes | None = None
    error: str = ""
    exc: BaseException | None = None
    stored: str = ""
    digest: str = ""
    media_url: str = ""


def save_original(owner_id: int, data: bytes) -> tuple[str, str]:
    """Store ``data`` under its key (storing it twice is harmless); returns (name, sha256).

    The database row is the job thread's to update (``Fetched.stored``).
    """
    digest = sha256(data)
    name = storage.original_key(owner_id, digest, sniff_format(data))
    if not default_storage.exists(name):
        name = default_storage.save(name, ContentFile(data))
    return name, digest


class Fetcher:
    """Downloads photos on ``concurrency`` threads; use as a context manager."""

    def __init__(self, concurrency: int | None = None, window: int | None = None):
        self.concurrency = max(1, concurrency or settings.FACES_FETCH_CONCURRENCY)
        self.window = max(self.concurrency, window or 2 * self.concurrency)
        self.deadline = float(settings.FACES_FETCH_TIMEOUT)
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="fetch")
        self._clients: dict[int, object] = {}

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._clients.clear()  # their session is the process's: its connections serve the next job

    def fetch(self, items: Iterable[tuple[Post, Photo]]) -> Iterator[Fetched]:
        """Each photo's ``Fetched`` as its download completes (not in order)."""
        todo = iter(items)
        running: set[Future] = set()

        def fill() -> None:
            while len(running) < self.window:
                item = next(todo, None)
                if item is None:
                    return
                post, photo = item
                # Clients are made here: reading the token is a query, and queries stay in this thread.
                client = self._client(post.source) if not photo.original and photo.media_url else None
                running.add(self._pool.submit(self._one, post, photo, client))

        fill()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                running.discard(future)
                yield future.result()
            fill()

    # -- in the download threads ------------------------------------------------------

    def _one(self, post: Post, photo: Photo, client) -> Fetched:
        try:
            if photo.kind == Photo.Kind.VIDEO:
                return Fetched(post, photo)  # the indexer reads or downloads a video itself, bounded
            if photo.original:
                return Fetched(post, photo, data=storage.read(photo.original.name))
            if client is None or post.source.kind != Source.Kind.INSTAGRAM:
                return Fetched(post, photo, error="The photo file is missing.")
            out = self._download(client, post, photo)
            if out.data is not None:
                out.stored, out.digest = save_original(post.owner_id, out.data)
                photo.original.name, photo.sha256 = out.stored, out.digest  # the job's own copy of the row
            return out
        except (RateLimited, TokenExpired) as exc:  # the job's business: wait, or ask to reconnect
            return Fetched(post, photo, exc=exc)
        except (ImageError, OSError) as exc:
            return Fetched(post, photo, error=f"Could not read the photo: {exc}")
        except Exception as exc:  # a bug must not leave the post pending forever
            logger.exception("Downloading photo %s failed", photo.pk)
            return Fetched(post, photo, error=f"Unexpected error while downloading ({exc.__class__.__name__}).")

    def _download(self, client, post: Post, photo: Photo) -> Fetched:
        url, fresh = photo.media_url, ""
        for delay in (*RETRY_DELAYS, None):
            try:
                try:
                    return Fetched(post, photo, data=client.download(url, self.deadline), media_url=fresh)
                except MediaExpired:
                    if fresh:
                        raise
                    url = fresh = client.media_url(photo.external_id)
                    return Fetched(post, photo, data=client.download(url, self.deadline), media_url=fresh)
            except MediaExpired as exc:
                return Fetched(post, photo, error=f"The photo is no longer available: {exc}", media_url=fresh)
            except SlowDownload as exc:
                return Fetched(post, photo, error=f"Instagram's media server was too slow: {exc}")
            except Unavailable as exc:  # 5xx or a dropped connection: try again, then fail the photo
                if delay is None:
                    tries = len(RETRY_DELAYS) + 1
                    return Fetched(post, photo, error=f"{exc} (gave up after {tries} tries)", media_url=fresh)
                logger.info("Photo %s: %s Again in %ss.", photo.pk, exc, delay)
                time.sleep(delay)
            except SourceError as exc:
                if isinstance(exc, (RateLimited, TokenExpired)):
                    raise
                return Fetched(post, photo, error=str(exc), media_url=fresh)
        raise AssertionError("unreachable")

    def _client(self, source: Source):
        client = self._clients.get(source.pk)
        if client is None:
            client = self._clients[source.pk] = instagram_client(source, session=download_session(self.concurrency))
        return client


_sessions: dict[int, requests.Session] = {}
_sessions_lock = threading.Lock()


def download_session(size: int) -> requests.Session:
    """This process's HTTP session for photo downloads, kept from job to job.

    A session per job opened new connections (a TCP and a TLS handshake with
    the CDN, round trips before the first byte) for the first photo of each
    download thread of every job; one per process lets each job reuse the last
    one's. It holds ``size`` connections a host. It carries no credentials
    (CDN URLs are signed; the Graph token goes in each request's query) and
    keeps no cookies (``plain_session``), so every tenant's jobs can share it. Keyed by process id:
    a forked worker opens its own connections instead of sharing its parent's sockets.
    """
    pid = os.getpid()
    with _sessions_lock:
        session = _sessions.get(pid)
        if session is None:
            _sessions.clear()  # a parent's, inherited by fork: dropped, not closed (its sockets are the parent's)
            session = _sessions[pid] = plain_session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=8, pool_maxsize=size)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        return session
