"""Memory one search request spends decoding its photo, per photo kind.

Run from the repository root: ``.venv/bin/python bench/search_memory.py``.

Each photo is made in this process and decoded in a fresh one, which reads its
bytes (as the upload does), then decodes it the way the search view does
(``decode_image(max_side=1600, pixel_limit=FACES_MAX_SEARCH_PIXELS)``) and
re-encodes the 1600 px query JPEG. Printed: the peak resident memory the
decode added over the process with the bytes already read (VmHWM), or
the refusal message.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from harness import ROOT, throwaway_django

CASE = r"""
import sys
sys.path.insert(0, {root!r})
from harness import throwaway_django
throwaway_django("faces-bench-mem-")
from django.conf import settings
from indexing.images import ImageError, decode_image, encode_jpeg
data = open({path!r}, "rb").read()
def peak():  # VmHWM, not ru_maxrss: a child inherits its parent's ru_maxrss
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
    return int(line.split()[1])
before = peak()
try:
    decoded = decode_image(data, max_side=1600, pixel_limit=settings.FACES_MAX_SEARCH_PIXELS)
    encode_jpeg(decoded.image, 90)
    after = peak()
    print(f"+{{(after - before) / 1024:.0f}} MB")
except ImageError as exc:
    print(f"refused: {{exc}}")
"""

CASES = [
    ("PNG", 10000, 7900, "RGB"),  # the 79 MP PNG of the issue
    ("PNG", 4000, 4000, "RGBA"),  # 16 MP, at the limit, 4 bytes a pixel
    ("PNG", 4000, 4000, "RGB"),
    ("PNG", 4000, 4000, "I;16"),  # 16-bit grey
    ("HEIF", 4000, 4000, "RGB"),
    ("JPEG", 10000, 7900, "RGB"),  # 79 MP JPEG: decoded at 1/4 scale
    ("JPEG", 4000, 3000, "RGB"),  # a 12 MP phone photo
]


def main() -> None:
    throwaway_django("faces-bench-mem-")
    from django.conf import settings

    print(f"FACES_MAX_SEARCH_PIXELS = {settings.FACES_MAX_SEARCH_PIXELS:,}")
    folder = Path(tempfile.mkdtemp(prefix="faces-bench-mem-photos-"))
    for n, case in enumerate(CASES):
        kind, width, height, mode = case
        path = folder / f"{n}.img"
        Image.new(mode, (width, height), 1000 if mode == "I;16" else "white").save(path, kind)
        code = CASE.format(root=str(ROOT / "bench"), path=str(path))
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
        path.unlink()
        print(f"{kind:4} {width}x{height} {mode:5} {(width * height) / 1e6:5.1f} MP: "
              f"{(result.stdout.strip() or result.stderr.strip()[-300:])}")


if __name__ == "__main__":
    main()
