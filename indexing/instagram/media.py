"""Graph API media objects as ``RemotePost`` items.

A media is an ``IMAGE``, a ``VIDEO`` (indexed through its cover image) or a
``CAROUSEL_ALBUM`` whose children are the photos. Media without an image URL
(copyright-flagged, or a video without a cover) become posts with a
``skip_reason`` so the run can count and show them.
"""

from __future__ import annotations

import datetime as dt

from indexing.sources import RemotePhoto, RemotePost

MEDIA_FIELDS = (
    "id,media_type,media_url,permalink,timestamp,caption,thumbnail_url,"
    "children{id,media_type,media_url,thumbnail_url}"
)
MEDIA_TYPES = ("IMAGE", "VIDEO", "CAROUSEL_ALBUM")
COPYRIGHT_SKIP = "no media_url (copyright-flagged)"


def parse_timestamp(value: str | None) -> dt.datetime | None:
    """Instagram's ``2024-05-01T12:00:00+0000`` as an aware datetime."""
    if not value:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"):
        try:
            return dt.datetime.strptime(value, fmt)
        except ValueError:
            continue
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def image_url(item: dict) -> str:
    """The image to index: the cover of a video, else the media itself."""
    if item.get("media_type") == "VIDEO":
        return str(item.get("thumbnail_url") or "")
    return str(item.get("media_url") or "")


def to_post(item: dict) -> RemotePost:
    """One listed media (with ``MEDIA_FIELDS``) as a post with its photos in order."""
    media_id = str(item.get("id"))
    media_type = str(item.get("media_type") or "IMAGE")
    post = RemotePost(
        external_id=media_id,
        media_type=media_type if media_type in MEDIA_TYPES else "IMAGE",
        permalink=str(item.get("permalink") or ""),
        caption=str(item.get("caption") or ""),
        timestamp=parse_timestamp(item.get("timestamp")),
    )
    if media_type == "CAROUSEL_ALBUM":
        children = (item.get("children") or {}).get("data") or []
        for child in children:
            url = image_url(child)
            if child.get("id") and url:
                post.photos.append(
                    RemotePhoto(external_id=str(child["id"]), position=len(post.photos), media_url=url)
                )
        if not children and item.get("media_url"):
            # No children listed: the parent's media_url is the first image.
            post.photos.append(RemotePhoto(external_id=media_id, media_url=str(item["media_url"])))
    else:
        url = image_url(item)
        if url:
            post.photos.append(RemotePhoto(external_id=media_id, media_url=url))
    if not post.photos:
        has_video = media_type == "VIDEO" and item.get("media_url")
        post.skip_reason = "video without a cover image" if has_video else COPYRIGHT_SKIP
    return post
