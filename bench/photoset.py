"""Many distinct photos with faces, generated from the few shared fixtures.

Each photo is a fixture with faces (people/ and groups/) cropped a little
(keeping at least 85% of each side, so faces stay in), scaled to a long side
between 720 and 1080 px, sometimes mirrored or brightened, and re-encoded as
JPEG at its own quality: every file differs (distinct sha256) and holds the
fixture's faces. The set is written once per size to a folder under the
system's temporary directory and reused by later runs.
"""

from __future__ import annotations

import hashlib
import io
import random
import tempfile
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

from harness import FIXTURES

LONG_SIDES = (720, 864, 960, 1080)


def face_fixtures() -> list[Path]:
    return sorted(p for folder in ("people", "groups") for p in (FIXTURES / folder).rglob("*.jpg"))


def variant(image: Image.Image, rng: random.Random) -> bytes:
    """One cropped, scaled, maybe mirrored or brightened JPEG of ``image``."""
    w, h = image.size
    keep_w, keep_h = rng.uniform(0.85, 1.0), rng.uniform(0.85, 1.0)
    left = rng.uniform(0, 1 - keep_w) * w
    top = rng.uniform(0, 1 - keep_h) * h
    out = image.crop((round(left), round(top), round(left + keep_w * w), round(top + keep_h * h)))
    side = rng.choice(LONG_SIDES)
    scale = side / max(out.size)
    out = out.resize((max(1, round(out.width * scale)), max(1, round(out.height * scale))), Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        out = ImageOps.mirror(out)
    if rng.random() < 0.3:
        out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.85, 1.15))
    buffer = io.BytesIO()
    out.save(buffer, "JPEG", quality=rng.randint(78, 94))
    return buffer.getvalue()


def generate(count: int, seed: int = 15) -> list[Path]:
    """``count`` distinct JPEG files with faces (cached on disk); returns their paths."""
    folder = Path(tempfile.gettempdir()) / f"faces-photoset-{count}-{seed}"
    files = sorted(folder.glob("*.jpg"))
    if len(files) == count:
        return files
    folder.mkdir(parents=True, exist_ok=True)
    for stale in files:
        stale.unlink()
    rng = random.Random(seed)
    sources = []
    for path in face_fixtures():
        with Image.open(path) as image:
            sources.append((path, ImageOps.exif_transpose(image).convert("RGB")))
    seen: set[str] = set()
    out: list[Path] = []
    n = 0
    while len(out) < count:
        path, image = sources[n % len(sources)]
        n += 1
        data = variant(image, rng)
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        target = folder / f"{len(out):05d}-{path.parent.name}-{path.stem}.jpg"
        target.write_bytes(data)
        out.append(target)
    return out


if __name__ == "__main__":
    import sys

    paths = generate(int(sys.argv[1]) if len(sys.argv) > 1 else 600)
    print(f"{len(paths)} photos in {paths[0].parent}")
