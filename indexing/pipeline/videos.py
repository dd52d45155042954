"""Indexing one video of a post: its file, its cover, the engine's tracks, their frames.

An engine that ``indexes_video`` gets the whole video (the cover counts as its
first frame); any other engine indexes the cover image alone, which is what the
progress page and README say. The video is downloaded once (bounded by
``FACES_VIDEO_MAX_BYTES``) and stored for re-indexing; when a video has no
cover, a frame of it becomes its picture.
"""

from __future__ import annotations

from django.conf import settings

from .. import storage
from ..crawlers import download_instagram_media
from ..engines.base import FaceEngine, IndexResult
from ..images import ImageError, encode_jpeg
from ..models import Photo, Post, Source
from ..thumbnails import face_thumbnail
from ..video import VideoError

FRAME_SIDE = 1280  # stored frames are no larger than a photo's rendition


def index_video(engine: FaceEngine, post: Post, photo: Photo) -> tuple[IndexResult, dict[str, str], list[str]]:
    """Index ``photo`` (a video); returns the result, face thumbnails and the other files stored.

    Raises ``VideoError`` or ``ImageError`` for a video or cover that cannot be read.
    """
    poster = _poster_bytes(post, photo)
    if not engine.indexes_video:
        if poster is None:
            raise ImageError("Faces in videos need the local engine, and this video has no cover image.")
        result = engine.index_image(post.owner, poster, photo.external_id)
        return result, _thumbnails(post, result), []
    data = _video_bytes(post, photo)
    result = engine.index_video(post.owner, data, photo.external_id, poster=poster)
    files = []
    if poster is None and result.image is not None:
        storage.store_poster(photo, encode_jpeg(result.image))
    thumbnails = {}
    for face in result.faces:
        frame = face.frame
        thumbnails[face.face_id] = storage.store_face_thumbnail(
            post.owner_id, face.face_id, face_thumbnail(frame, face.box)
        )
        if max(frame.size) > FRAME_SIDE:
            frame = frame.copy()
            frame.thumbnail((FRAME_SIDE, FRAME_SIDE))
        files.append(storage.store_frame(post.owner_id, face.face_id, encode_jpeg(frame)))
        face.frame = files[-1]  # the key of the stored frame, for the Face row
    Photo.objects.filter(pk=photo.pk).update(duration=result.duration)
    result.image = None
    return result, thumbnails, files


def _thumbnails(post: Post, result: IndexResult) -> dict[str, str]:
    image = result.image
    result.image = None
    return {
        face.face_id: storage.store_face_thumbnail(post.owner_id, face.face_id, face_thumbnail(image, face.box))
        for face in result.faces
    }


def _poster_bytes(post: Post, photo: Photo) -> bytes | None:
    """The stored cover, or the cover downloaded from Instagram (stored), or None."""
    if photo.original:
        return storage.read(photo.original.name)
    if photo.media_url and post.source.kind == Source.Kind.INSTAGRAM:
        data = download_instagram_media(post.source, photo, video=False)
        storage.store_poster(photo, data)
        return data
    return None


def _video_bytes(post: Post, photo: Photo) -> bytes:
    if photo.video:
        return storage.read(photo.video.name)
    if not photo.video_url or post.source.kind != Source.Kind.INSTAGRAM:
        raise VideoError("The video file is missing.")
    data = download_instagram_media(post.source, photo, video=True)
    if len(data) > settings.FACES_VIDEO_MAX_BYTES:
        raise VideoError(f"The video is larger than {settings.FACES_VIDEO_MAX_BYTES // (1024 * 1024)} MB.")
    storage.store_video(photo, data)
    return data
