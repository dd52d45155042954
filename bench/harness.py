"""What the bench scripts share: the repository's path, the fixtures, a throwaway Django.

Scripts run as ``.venv/bin/python bench/<name>.py``, so this folder is on
``sys.path`` and ``from harness import ...`` finds this module.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("FACES_FIXTURES", ROOT.parent / "shared" / "fixtures" / "faces"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def fixture_jpegs(long_side: int = 1080) -> list[bytes]:
    """Every people/, groups/ and noface/ fixture scaled to ``long_side`` px, as JPEG (quality 90).

    Pillow only, no project code: ``engine_versus.py`` loads another revision's code in its workers.
    """
    import io

    from PIL import Image

    out = []
    for folder in ("people", "groups", "noface"):
        for path in sorted((FIXTURES / folder).rglob("*.jpg")):
            with Image.open(path) as image:
                image = image.convert("RGB")
                scale = long_side / max(image.size)
                size = (round(image.width * scale), round(image.height * scale))
                buffer = io.BytesIO()
                image.resize(size, Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90, optimize=False)
                out.append(buffer.getvalue())
    return out


def throwaway_django(prefix: str, **environ: str) -> Path:
    """Set Django up on a new temporary data folder, never on real data; returns the folder.

    The database is a SQLite file in that folder unless ``BENCH_DATABASE_URL``
    names another (it is migrated and written to); the broker and cache are the
    embedded ones (``REDIS_URL`` is ignored). ``environ`` adds settings.
    """
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "faces_site.settings")
    os.environ["FACES_DATA_DIR"] = str(data_dir)
    os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{data_dir}/bench.sqlite3")
    os.environ.pop("REDIS_URL", None)
    os.environ.update(environ)
    import django

    django.setup()
    return data_dir


@contextmanager
def revision_tree(rev: str) -> Iterator[Path]:
    """``rev`` checked out into a temporary git worktree, removed afterwards: the other side of an A/B."""
    worktree = Path(tempfile.mkdtemp(prefix="faces-rev-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), rev],
                   check=True, capture_output=True)
    try:
        yield worktree
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)],
                       capture_output=True)
