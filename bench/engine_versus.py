"""The local engine against an earlier revision of itself: same photos, same run, turns taken.

Run from the repository root::

    .venv/bin/python bench/engine_versus.py [--rev fd28fdf] [--rounds 6] [--processes 2] [--repeat 3]

The revision is checked out into a temporary git worktree (removed afterwards)
and both trees index the same 1080 px fixtures (``harness.fixture_jpegs``: people/,
groups/ and noface/, JPEG; ``--repeat`` times a round) the way ``engine.py`` does: ``index_image`` plus a
thumbnail per face, in a pool of N spawned single-threaded processes per
tree. Rounds alternate between the trees (A B A B ...), so a shared machine's
drift falls on both; printed are each round's photos/s, the medians and their
ratio. The default revision is main just before rotation and small-face
detection were merged (issue 16's "today").
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time

from harness import ROOT, fixture_jpegs, revision_tree

BEFORE_RECALL = "fd28fdf"  # main before the 'recall' branch (rotation, small faces) was merged
LONG_SIDE = 1080

_engine = None


def _init(tree: str) -> None:
    """A pool process: that tree's code and settings on a throwaway data folder, models loaded."""
    global _engine
    sys.path.insert(0, tree)
    os.chdir(tree)
    os.environ["DJANGO_SETTINGS_MODULE"] = "faces_site.settings"
    os.environ["FACES_DATA_DIR"] = tempfile.mkdtemp(prefix="faces-versus-")
    os.environ["FACES_ENGINE"] = "local"
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from indexing.engines import get_engine

    _engine = get_engine()


def _index_one(data: bytes) -> int:
    from indexing.thumbnails import face_thumbnail

    result = _engine.index_image(None, data, "bench")
    for face in result.faces:
        face_thumbnail(result.image, face.box)
    return len(result.faces)


def rate(pool, batch: list[bytes]) -> tuple[float, int]:
    start = time.perf_counter()
    faces = sum(pool.map(_index_one, batch, chunksize=2))
    return len(batch) / (time.perf_counter() - start), faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default=BEFORE_RECALL, help="the other revision (default: before issue 16)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="the fixtures this many times a round")
    args = parser.parse_args()
    batch = fixture_jpegs(LONG_SIDE) * args.repeat
    with revision_tree(args.rev) as worktree:
        versus(args, batch, {"this tree": str(ROOT), args.rev: str(worktree)})


def versus(args, batch: list[bytes], trees: dict[str, str]) -> None:
    """Index ``batch`` in each tree's pool, the trees taking turns round by round; print the medians."""
    context = multiprocessing.get_context("spawn")
    pools = {name: context.Pool(args.processes, initializer=_init, initargs=(tree,)) for name, tree in trees.items()}
    try:
        faces = {}
        for name, pool in pools.items():  # warm up: models loaded, first calls made
            pool.map(_index_one, batch[: 2 * args.processes], chunksize=1)
        rates: dict[str, list[float]] = {name: [] for name in pools}
        print(f"{len(batch) // args.repeat} photos x {args.repeat} at {LONG_SIDE} px, {args.processes} processes per tree, "
              f"load average {os.getloadavg()[0]:.2f}")
        for round_ in range(args.rounds):
            order = list(pools) if round_ % 2 == 0 else list(reversed(pools))
            for name in order:
                photos_per_s, faces[name] = rate(pools[name], batch)
                rates[name].append(photos_per_s)
            print(f"round {round_ + 1}: " + "  ".join(f"{name} {rates[name][-1]:.1f}" for name in pools))
        medians = {name: statistics.median(values) for name, values in rates.items()}
        for name in pools:
            print(f"{name:>10}: median {medians[name]:.1f} photos/s, {faces[name] // args.repeat} faces")
        ours, theirs = medians["this tree"], medians[args.rev]
        print(f"this tree / {args.rev}: {ours / theirs:.2f}x the photos/s")
    finally:
        for pool in pools.values():
            pool.terminate()


if __name__ == "__main__":
    main()
