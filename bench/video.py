"""Video figures: CPU seconds per 30-s 720p reel and per minute of video, tracks, peak RSS.

Run from the repository root: ``.venv/bin/python bench/video.py [--quick]``.
The clips are H.264 MP4s made from the face fixtures (tests/videos.py): people
walk in and out of a 1280x720 frame at 30 fps. They are rendered once into
``var/bench-video/`` (encoding is slower than indexing) and reused. Times are
CPU seconds of this one process (one engine thread, one core), so other load
on the machine changes them little; the photo rate of the same engine in the
same run is printed beside them as the reference.
"""

from __future__ import annotations

import argparse
import resource
import time

from harness import FIXTURES, ROOT, throwaway_django

throwaway_django("faces-bench-video-")

from indexing.engines import local  # noqa: E402
from indexing.video import sample_frames  # noqa: E402
from tests.videos import Appearance, Clip, render  # noqa: E402

CACHE = ROOT / "var" / "bench-video"


def reel(seconds: float) -> Clip:
    """Three people: one throughout, one from a third of the way, one near the end."""
    people = FIXTURES / "people"
    return Clip(
        seconds,
        [
            Appearance(people / "barack_obama/1.jpg", 0, seconds, x=0.05, y=0.1, height=0.6, drift=0.004),
            Appearance(people / "joe_biden/1.jpg", seconds / 3, seconds * 0.8, x=0.45, y=0.2, height=0.5),
            Appearance(people / "kit_harington/2.jpg", seconds * 0.7, seconds, x=0.72, y=0.3, height=0.45),
        ],
        width=1280,
        height=720,
        fps=30,
    )


def clip_bytes(name: str, seconds: float) -> bytes:
    path = CACHE / f"{name}-{seconds:g}s-720p.mp4"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        path.write_bytes(render(reel(seconds)))
        print(f"  rendered {path.name} in {time.perf_counter() - started:.0f} s")
    return path.read_bytes()


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(engine, data: bytes, repeats: int) -> tuple[float, float, int, int]:
    """CPU seconds to decode only and to index, frames sampled and tracks, best of ``repeats``."""
    decode = index = float("inf")
    frames = tracks = 0
    for _ in range(repeats):
        started = cpu()
        frames = sum(1 for _ in sample_frames(data))
        decode = min(decode, cpu() - started)
        started = cpu()
        result = engine.index_video(1, data, "bench")
        index = min(index, cpu() - started)
        tracks = len(result.faces)
    return decode, index, frames, tracks


def photo_rate(engine, repeats: int) -> float:
    """Photos/s of the same engine on the 1080 px fixtures, one process (the reference)."""
    from engine import photos  # bench/engine.py's photo set

    images = photos()
    started = cpu()
    for _ in range(repeats):
        for image in images:
            local.analyze(image)
    return repeats * len(images) / (cpu() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one repeat, no 60-s clip")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    engine = local.LocalEngine()
    engine.warm_up() if hasattr(engine, "warm_up") else local.models()
    print("Video indexing, local engine, one core (CPU seconds, best of %d)" % repeats)
    rows = [("30-s reel", clip_bytes("reel", 30))]
    if not args.quick:
        rows.append(("60-s video", clip_bytes("video", 60)))
    print(f"{'clip':<12}{'decode s':>10}{'index s':>10}{'frames':>8}{'tracks':>8}{'s/min':>8}")
    measured = []
    for label, data in rows:
        decode, index, frames, tracks = measure(engine, data, repeats)
        seconds = float(label.split("-")[0])
        measured.append((label, index))
        print(f"{label:<12}{decode:>10.2f}{index:>10.2f}{frames:>8}{tracks:>8}{index * 60 / seconds:>8.2f}")
    rate = photo_rate(engine, 1 if args.quick else 2)
    print(f"reference: {rate:.1f} photos/s on the 1080 px fixtures, same process")
    for label, index in measured:  # machine-independent: the clip's cost in photos of the same engine
        print(f"  {label} costs as much as {index * rate:.0f} photos")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
