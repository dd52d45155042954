"""A child process that runs one decoder call per request, for the fuzz tests.

A decoder bug in C code can crash or hang the process that calls it; running
the calls here lets the test report a crash or a hang (and the input that
caused it) instead of dying with it. The parent sends ``(target, data)`` and
gets back ``("ok", "", "")`` or ``("raised", "module.Class", traceback)``.
"""

from __future__ import annotations

import io
import os
import traceback
from multiprocessing.connection import Connection


def _decode(data: bytes) -> None:
    from indexing.images import decode_image

    decode_image(data)
    decode_image(data, max_side=64)  # the reduced (JPEG draft) path


def _analyze(data: bytes) -> None:
    from indexing.engines.local import analyze

    analysis = analyze(data)
    for index in range(len(analysis.faces)):
        analysis.embedding(index)


def _export(data: bytes) -> None:
    from indexing.instagram.export import iter_export_posts, open_export

    open_export(data).close()
    for post in iter_export_posts(io.BytesIO(data)):
        for photo in post.photos:
            photo.load()


def _selftest(data: bytes) -> None:
    """Misbehave on purpose, so the test can show the guard catches hangs and crashes."""
    if data == b"hang":
        import time

        time.sleep(60)
    elif data == b"crash":
        os.abort()


TARGETS = {"decode": _decode, "analyze": _analyze, "export": _export, "selftest": _selftest}


def serve(conn: Connection) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "faces_site.settings")
    import django

    django.setup()
    from indexing.engines.local import face_models

    face_models()  # load the face models once, before the first timed call
    conn.send(("ready", "", ""))
    while True:
        try:
            target, data = conn.recv()
        except EOFError:
            return
        try:
            TARGETS[target](data)
        except BaseException as exc:  # noqa: BLE001 - reported to the test, which judges it
            kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
            conn.send(("raised", kind, traceback.format_exc(limit=8)))
        else:
            conn.send(("ok", "", ""))
