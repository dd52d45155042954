"""Reading videos from strangers: sniffing the container and sampling frames within limits.

Reels and videos arrive as MP4/MOV (sometimes with no file extension in an
export), WebM from some uploads. They may be truncated, audio-only, enormous or
endless, so everything goes through ``sample_frames``, which yields a bounded
number of upright RGB frames one at a time (never all of them) or raises
``VideoError`` with a message a person can read.

PyAV decodes; only reference frames are decoded (B-frames are skipped, which
halves the cost and never damages the frames kept), and one frame is taken per
``FACES_VIDEO_SAMPLE_SECONDS`` plus the first frame after a scene change.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import av
import numpy as np
from django.conf import settings

VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".webm")
# ISO BMFF (MP4, MOV, M4V, 3GP) boxes that may open a file; QuickTime files
# from old cameras start with 'moov', 'mdat', 'wide' or 'free' instead of 'ftyp'.
_BMFF_BOXES = {b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"}
_EBML = b"\x1a\x45\xdf\xa3"  # Matroska / WebM
SCENE_CHANGE = 0.35  # mean absolute difference (0-1) of tiny grey frames that marks a cut
SCENE_MIN_GAP = 0.25  # seconds: at most one extra frame per this interval


class VideoError(ValueError):
    """The bytes are not a video we can read, or it breaks a limit; the message says why."""


@dataclass
class Frame:
    time: float  # seconds from the start
    pixels: np.ndarray  # upright RGB, uint8, height x width x 3


@dataclass
class VideoInfo:
    duration: float  # seconds (0 when the container does not say)
    width: int
    height: int


def is_video(head: bytes) -> bool:
    """Whether ``head`` (the first bytes of a file) opens a video container we read."""
    if head[:4] == _EBML:
        return True
    return len(head) >= 8 and head[4:8] in _BMFF_BOXES


def probe(source: bytes | BinaryIO) -> VideoInfo:
    """Duration and size of the first video stream, without decoding frames."""
    with _open(source) as container:
        stream = _video_stream(container)
        return VideoInfo(_duration(container, stream), stream.codec_context.width, stream.codec_context.height)


def sample_frames(
    source: bytes | BinaryIO,
    *,
    every: float | None = None,
    max_seconds: float | None = None,
    max_frames: int | None = None,
    budget_seconds: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Frame]:
    """Yield one frame per ``every`` seconds (and after cuts), within the limits.

    Limits default to ``FACES_VIDEO_*`` settings. A video longer than
    ``max_seconds`` is read up to there; sampling stops after ``max_frames``
    frames or when ``budget_seconds`` of decoding have passed (by ``clock``).
    Raises ``VideoError`` before the first frame for unreadable input, and for
    damage found later only if no frame came out.
    """
    every = settings.FACES_VIDEO_SAMPLE_SECONDS if every is None else every
    max_seconds = settings.FACES_VIDEO_MAX_SECONDS if max_seconds is None else max_seconds
    max_frames = settings.FACES_VIDEO_MAX_FRAMES if max_frames is None else max_frames
    budget_seconds = settings.FACES_VIDEO_TIME_BUDGET if budget_seconds is None else budget_seconds
    started = clock()
    yielded = 0
    next_time = 0.0
    last_extra = -SCENE_MIN_GAP
    previous: np.ndarray | None = None
    with _open(source) as container:
        stream = _video_stream(container)
        stream.thread_type = "NONE"  # one core per worker process; the pool gives the parallelism
        stream.codec_context.skip_frame = "BIDIR"
        rotation = _rotation(stream)
        try:
            for frame in container.decode(stream):
                seconds = _seconds(frame, stream)
                if seconds > max_seconds:
                    break
                tiny = _tiny(frame)
                cut = previous is not None and float(np.abs(tiny - previous).mean()) > SCENE_CHANGE
                previous = tiny
                take = seconds >= next_time or (cut and seconds - last_extra >= SCENE_MIN_GAP)
                if not take:
                    continue
                if seconds >= next_time:
                    next_time = (int(seconds / every) + 1) * every
                else:
                    last_extra = seconds
                yield Frame(seconds, _upright(frame.to_ndarray(format="rgb24"), rotation))
                yielded += 1
                if yielded >= max_frames or clock() - started > budget_seconds:
                    break
        except av.FFmpegError as exc:
            if not yielded:
                raise VideoError(f"The video is damaged or truncated ({_short(exc)}).") from None
    if not yielded:
        raise VideoError("The video has no frames we can read.")


class _open:
    """``av.open`` for bytes or a file, turning its failures into ``VideoError``."""

    def __init__(self, source: bytes | BinaryIO):
        if isinstance(source, (bytes, bytearray, memoryview)):
            if not source:
                raise VideoError("The video file is empty.")
            source = io.BytesIO(source)
        self.source = source

    def __enter__(self):
        try:
            self.container = av.open(self.source, mode="r", metadata_errors="ignore")
        except (av.FFmpegError, ValueError, OSError) as exc:
            raise VideoError(f"This file is not a video we can read ({_short(exc)}).") from None
        return self.container

    def __exit__(self, *exc_info) -> None:
        self.container.close()


def _video_stream(container):
    if not container.streams.video:
        raise VideoError("The file holds no video picture (audio only?).")
    stream = container.streams.video[0]
    if not stream.codec_context.width or not stream.codec_context.height:
        raise VideoError("The video has no picture size; it may be damaged.")
    return stream


def _duration(container, stream) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return 0.0


def _seconds(frame, stream) -> float:
    if frame.pts is None or not stream.time_base:
        return float(frame.time or 0.0)
    start = stream.start_time or 0
    return max(0.0, float((frame.pts - start) * stream.time_base))


def _tiny(frame) -> np.ndarray:
    """A 32x18 grey thumbnail in 0-1, for cut detection (a few microseconds)."""
    return frame.reformat(width=32, height=18, format="gray").to_ndarray().astype(np.float32) / 255.0


def _rotation(stream) -> int:
    """Clockwise degrees the picture must turn to be upright (phone videos store it)."""
    try:
        matrix = stream.side_data.get("DISPLAYMATRIX") if hasattr(stream, "side_data") else None
        degrees = -round(float(matrix)) if matrix is not None else 0
    except (TypeError, ValueError):
        degrees = 0
    if not degrees:
        try:
            degrees = int(stream.metadata.get("rotate", 0))
        except (TypeError, ValueError):
            degrees = 0
    return degrees % 360


def _upright(pixels: np.ndarray, rotation: int) -> np.ndarray:
    if rotation == 90:
        return np.ascontiguousarray(np.rot90(pixels, k=-1))
    if rotation == 180:
        return np.ascontiguousarray(pixels[::-1, ::-1])
    if rotation == 270:
        return np.ascontiguousarray(np.rot90(pixels, k=1))
    return pixels


def _short(exc: Exception) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text if len(text) <= 120 else text[:117].rstrip() + "..."
