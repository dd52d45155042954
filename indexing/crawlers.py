"""Enumerate a Source as RemotePost items: Instagram, export ZIP or uploads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from django.core.files.storage import default_storage
from django.utils import timezone

from .instagram.client import InstagramClient
from .instagram.export import iter_export_posts
from .models import Photo, Source
from .sources import MediaExpired, RemotePost, SourceError, TokenExpired


def iter_source_posts(source: Source, since: dt.datetime | None = None) -> Iterator[RemotePost]:
    """Yield the posts of ``source``; uploads were stored as posts when uploaded."""
    if source.kind == Source.Kind.INSTAGRAM:
        with instagram_client(source) as client:
            yield from client.iter_media(since=since)
    elif source.kind == Source.Kind.EXPORT:
        if not source.archive:
            raise SourceError("The export ZIP is missing.")
        with default_storage.open(source.archive.name, "rb") as archive:
            yield from iter_export_posts(archive)


def instagram_client(source: Source) -> InstagramClient:
    """A Graph API client with the source's long-lived token."""
    account = source.social_account
    token = account.socialtoken_set.order_by("-id").first() if account else None
    if token is None or not source.active:
        raise TokenExpired("Instagram is not linked any more.")
    if token.expires_at and token.expires_at <= timezone.now():
        raise TokenExpired("The Instagram access token has expired.")
    return InstagramClient(token.token)


def instagram_media_ids(source: Source) -> set[str]:
    """Every media id Instagram still lists for the account (to notice deletions)."""
    with instagram_client(source) as client:
        return set(client.iter_media_ids())


def download_instagram_photo(source: Source, photo: Photo) -> bytes:
    """Download a photo; an expired signed URL is replaced by a fresh one once."""
    with instagram_client(source) as client:
        try:
            return client.download(photo.media_url)
        except MediaExpired:
            fresh = client.media_url(photo.external_id)
            Photo.objects.filter(pk=photo.pk).update(media_url=fresh)
            return client.download(fresh)
