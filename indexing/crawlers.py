"""Enumerate a Source as RemotePost items: Instagram, export ZIP or uploads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import requests
from django.conf import settings
from django.core.files.storage import default_storage
from django.utils import timezone

from .instagram.client import InstagramClient
from .instagram.export import iter_export_posts
from .models import Photo, Source
from .sources import MediaExpired, RemotePost, SourceError, TokenExpired


# Export ZIP items go to the crawl in pages of this many, like Instagram's.
EXPORT_PAGE = 100


def iter_source_pages(
    source: Source, after: str = "", since: dt.datetime | None = None
) -> Iterator[tuple[list[RemotePost], str | None]]:
    """The posts of ``source`` a page at a time, each with the cursor of the page after it.

    Instagram pages resume from ``after`` ("" after the last page); an export
    ZIP is read again from its start after an interruption (cursor None),
    which the idempotent upsert makes harmless. Uploads were stored as posts
    when uploaded.
    """
    if source.kind == Source.Kind.INSTAGRAM:
        with instagram_client(source) as client:
            yield from client.media_pages(after=after, since=since)
    elif source.kind == Source.Kind.EXPORT:
        if not source.archive:
            raise SourceError("The export ZIP is missing.")
        with default_storage.open(source.archive.name, "rb") as archive:
            page: list[RemotePost] = []
            for post in iter_export_posts(archive):
                page.append(post)
                if len(page) == EXPORT_PAGE:
                    yield page, None
                    page = []
            if page:
                yield page, None


def instagram_client(source: Source, session: requests.Session | None = None) -> InstagramClient:
    """A Graph API client with the source's long-lived token (on ``session``, else its own)."""
    account = source.social_account
    token = account.socialtoken_set.order_by("-id").first() if account else None
    if token is None or not source.active:
        raise TokenExpired("Instagram is not linked any more.")
    if token.expires_at and token.expires_at <= timezone.now():
        raise TokenExpired("The Instagram access token has expired.")
    return InstagramClient(token.token, session=session)


def instagram_media_ids(source: Source) -> set[str]:
    """Every media id Instagram still lists for the account (to notice deletions)."""
    with instagram_client(source) as client:
        return set(client.iter_media_ids())


def download_instagram_media(source: Source, photo: Photo, *, video: bool) -> bytes:
    """Download a video (``video_url``, up to ``FACES_VIDEO_MAX_BYTES``) or its cover
    (``media_url``); an expired signed URL is replaced by a fresh one once."""
    field = "video_url" if video else "media_url"
    limit = settings.FACES_VIDEO_MAX_BYTES if video else None
    with instagram_client(source) as client:
        try:
            return client.download(getattr(photo, field), max_bytes=limit)
        except MediaExpired:
            fresh = client.video_url(photo.external_id) if video else client.media_url(photo.external_id)
            Photo.objects.filter(pk=photo.pk).update(**{field: fresh})
            setattr(photo, field, fresh)
            return client.download(fresh, max_bytes=limit)
