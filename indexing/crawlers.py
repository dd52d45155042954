"""Enumerate a Source as RemotePost items: Instagram, export ZIP or uploads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from django.core.files.storage import default_storage
from django.utils import timezone

from .instagram.client import InstagramClient
from .instagram.export import iter_export_posts
from .models import Source
from .sources import RemotePost, SourceError, TokenExpired


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
