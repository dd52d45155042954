"""The embedded face engine: YuNet finds faces, SFace embeds them, numpy searches them.

``runtime`` loads and runs the models, ``detection`` finds, checks and aligns
faces, ``vectors`` holds the similarity scale and the per-owner search
matrices, ``engine`` puts them together as ``LocalEngine``. The names below
are the package's public face. ``vectors`` is imported eagerly (numpy only);
the rest loads on first use, so that grouping people or importing the
similarity scale never imports onnxruntime or OpenCV.
"""

from __future__ import annotations

from importlib import import_module

from .vectors import DIM, EMBEDDING_BYTES, cosine_from_similarity, similarity_from_cosine

_LAZY = {
    "LocalEngine": "engine",
    "analyze": "engine",
    "Analysis": "engine",
    "FaceModels": "runtime",
    "face_models": "runtime",
    "set_threads": "runtime",
}

__all__ = ["DIM", "EMBEDDING_BYTES", "cosine_from_similarity", "similarity_from_cosine", *_LAZY]


def __getattr__(name: str):
    """Load ``engine`` or ``runtime`` (and with them onnxruntime and OpenCV) when first asked."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
