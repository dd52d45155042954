"""Short test videos made from the fixture faces (H.264 in MP4 through PyAV's libx264).

Each clip is a list of scenes; a scene shows fixture faces pasted on a plain
background from ``start`` to ``end`` seconds, so a test knows exactly when a
person appears.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import av
from PIL import Image


@dataclass
class Appearance:
    photo: Path  # a fixture photo (its face fills the middle of it)
    start: float
    end: float
    x: float = 0.1  # left edge, relative to the frame width
    y: float = 0.15
    height: float = 0.7  # pasted photo height, relative to the frame height
    drift: float = 0.0  # relative distance moved to the right per second


@dataclass
class Clip:
    seconds: float
    appearances: list[Appearance] = field(default_factory=list)
    width: int = 480
    height: int = 270
    fps: int = 10
    background: tuple[int, int, int] = (90, 110, 130)


def render(clip: Clip, container: str = "mp4", codec: str = "libx264") -> bytes:
    """Encode ``clip`` and return the file's bytes."""
    photos = {a.photo: Image.open(a.photo).convert("RGB") for a in clip.appearances}
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=clip.fps)
        stream.width, stream.height, stream.pix_fmt = clip.width, clip.height, "yuv420p"
        for index in range(int(round(clip.seconds * clip.fps))):
            now = index / clip.fps
            canvas = Image.new("RGB", (clip.width, clip.height), clip.background)
            for a in clip.appearances:
                if a.start <= now < a.end:
                    side = int(clip.height * a.height)
                    face = photos[a.photo].resize((side * photos[a.photo].width // photos[a.photo].height, side))
                    left = int(clip.width * (a.x + a.drift * (now - a.start)))
                    canvas.paste(face, (left, int(clip.height * a.y)))
            for packet in stream.encode(av.VideoFrame.from_image(canvas)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buffer.getvalue()


def audio_only(seconds: float = 1.0) -> bytes:
    """An MP4 with one AAC stream and no picture."""
    import numpy as np

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as out:
        stream = out.add_stream("aac", rate=44100)
        samples = np.zeros((1, 1024), dtype=np.float32)
        for index in range(int(seconds * 44100 / 1024)):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 44100
            frame.pts = index * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buffer.getvalue()
