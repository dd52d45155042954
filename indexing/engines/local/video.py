"""The local engine's video indexing: sampled frames, faces tracked across them.

Each track becomes one indexed face: the embedding is the mean of its
sightings (steadier than any one frame), the box and frame are those of its
best sighting, and ``seen_at`` is the moment it first appears. Frames are read
one at a time and only each track's best frame is kept, so memory does not
grow with the video's length.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable
from typing import BinaryIO

import numpy as np
from PIL import Image

from ... import video
from ..base import IndexedFace, IndexResult
from .tracking import Sighting, Tracker


def index_tracks(
    source: bytes | BinaryIO,
    analyze_pixels: Callable,
    *,
    poster: np.ndarray | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> IndexResult:
    """Track the faces of ``source`` (and of its ``poster``, taken as the first frame).

    ``analyze_pixels(pixels, width, height)`` is the engine's per-image analysis.
    Raises ``video.VideoError`` for a video that cannot be read.
    """
    tracker = Tracker()
    width = height = 0
    frames = 0
    last = 0.0
    picture = Image.fromarray(poster) if poster is not None else None
    if poster is not None:
        tracker.add_frame(_sightings(analyze_pixels, poster, 0.0))
    for frame in video.sample_frames(source, clock=clock):
        height, width = frame.pixels.shape[:2]
        if picture is None:
            picture = Image.fromarray(frame.pixels)  # no cover: the first frame stands for the video
        tracker.add_frame(_sightings(analyze_pixels, frame.pixels, frame.time))
        frames += 1
        last = frame.time
    faces = []
    for track in tracker.finish():
        best = track.best
        faces.append(
            IndexedFace(
                face_id=uuid.uuid4().hex,
                box=best.box,
                confidence=best.confidence,
                quality=best.quality,
                landmarks=best.payload["landmarks"],
                embedding=track.embedding.tobytes() if best.searchable else None,
                searchable=best.searchable,
                seen_at=round(track.first_seen, 2),
                frame=best.payload["frame"].image(),
            )
        )
    return IndexResult(faces=faces, width=width, height=height, frames=frames, duration=last, image=picture)


def _sightings(analyze_pixels: Callable, pixels: np.ndarray, seconds: float) -> list[Sighting]:
    height, width = pixels.shape[:2]
    analysis = analyze_pixels(pixels, width, height, embed=False)
    if not analysis.faces:
        return []
    frame = _Frame(analysis.pixels)
    sightings = []
    for index, face in enumerate(analysis.faces):
        sightings.append(
            Sighting(
                time=seconds,
                box=face.box,
                vector=functools.partial(analysis.embedding, index),
                quality=face.quality,
                confidence=face.confidence,
                searchable=face.searchable,
                payload={"landmarks": face.landmarks, "frame": frame},
            )
        )
    return sightings


class _Frame:
    """A frame's pixels, turned into an image only for the tracks that keep it."""

    def __init__(self, pixels: np.ndarray):
        self.pixels = pixels

    def image(self) -> Image.Image:
        return Image.fromarray(self.pixels)
