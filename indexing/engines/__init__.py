"""Face engines behind one interface; ``get_engine()`` picks the configured one."""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.utils.module_loading import import_string

from .base import FaceEngine

ENGINES = {
    "local": "indexing.engines.local.LocalEngine",
    "rekognition": "indexing.engines.rekognition.RekognitionEngine",
}


@lru_cache(maxsize=None)
def _engine(name: str) -> FaceEngine:
    try:
        path = ENGINES[name]
    except KeyError:
        raise ValueError(f"Unknown FACES_ENGINE {name!r}; use one of {', '.join(ENGINES)}.")
    return import_string(path)()


def get_engine(name: str | None = None) -> FaceEngine:
    """The engine named by ``FACES_ENGINE`` (or ``name``), one instance per process."""
    return _engine(name or settings.FACES_ENGINE)
