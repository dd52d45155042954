"""Local face engine figures: throughput, stages, recall on hard photos, search latency, selfie search.

Run from the repository root: ``.venv/bin/python bench/engine.py [--quick] [--only recall,cost]``.
Photos are the shared face fixtures scaled to 1080 px on the long side (JPEG,
in memory). Recall is rank-1 per condition of ``recall_sets`` (tilted,
sideways, shrunk), for the engine, for the engine before the rotation and
small-face steps, and for OpenCV's own ``FaceDetectorYN`` + ``FaceRecognizerSF``
on the same images in the same run. Each of those steps is priced on its own:
milliseconds per photo in one process and photos/s with two, interleaved with
the engine before them. Search uses synthetic normalized embeddings through
the engine's own search function. The database figure uses a throwaway SQLite
file unless ``BENCH_DATABASE_URL`` names another database (it is migrated and
written to).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from dataclasses import replace

from harness import FIXTURES, fixture_jpegs, throwaway_django

throwaway_django("faces-bench-")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from indexing.engines.local import alignment, detection, runtime, vectors  # noqa: E402
from indexing.engines.local.engine import ALIGN_SIDE, AnalyzedFace, LocalEngine, analyze  # noqa: E402
from indexing.images import decode_image, encode_jpeg  # noqa: E402
from indexing.thumbnails import face_thumbnail  # noqa: E402
from recall_sets import CONDITIONS, build, engine_finder, opencv_finder, recall  # noqa: E402

LONG_SIDE = 1080
ENGINE = detection.DetectOptions()
BEFORE = replace(ENGINE, detect_side=480, candidate_score=0.6, turns=(), retry_angles=())
# The engine's steps one by one, each on top of the previous (the last is the engine).
ADDITIONS = (
    ("before: 480 px, score 0.6, upright", BEFORE),
    ("+ small faces: candidates from 0.5", replace(ENGINE, turns=(), retry_angles=())),
    ("+ tilted re-checks at 30/45 deg", replace(ENGINE, turns=())),
    ("+ passes turned 90/180/270", replace(ENGINE, turns=tuple(t for t in ENGINE.turns if t % 90 == 0))),
    ("+ passes turned 45/-45 (engine)", ENGINE),
)


def photos() -> list[bytes]:
    """Every people/, groups/ and noface/ fixture at 1080 px long side, as JPEG."""
    return fixture_jpegs(LONG_SIDE)


def store(image: Image.Image, faces) -> int:
    """What the pipeline writes per face: a thumbnail JPEG and the serialized row (approximate)."""
    written = 0
    for face in faces:
        written += len(face_thumbnail(image, face.box))
        written += len(repr((face.box.as_list(), face.confidence, face.landmarks, face.embedding)))
    return written


# ----------------------------------------------------------------- indexing


_engine: LocalEngine | None = None


def _init_worker(threads: int, options: detection.DetectOptions = ENGINE) -> None:
    global _engine
    detection.OPTIONS = options
    runtime.set_threads(threads)  # before the models load: their sessions take it
    _engine = LocalEngine()
    runtime.face_models()


def _index_one(data: bytes) -> int:
    """The real path: index_image, then face thumbnails from the pixels it decoded."""
    result = _engine.index_image(None, data, "bench")
    store(result.image, result.faces)
    return len(result.faces)


def throughput(
    batch: list[bytes], processes: int, threads: int = 1, options: detection.DetectOptions = ENGINE
) -> tuple[float, int]:
    context = multiprocessing.get_context("fork")
    with context.Pool(processes, initializer=_init_worker, initargs=(threads, options)) as pool:
        pool.map(_index_one, batch[: processes * 2], chunksize=1)  # warm up every worker
        start = time.perf_counter()
        faces = sum(pool.map(_index_one, batch, chunksize=2))
        elapsed = time.perf_counter() - start
    return len(batch) / elapsed, faces


def stages(batch: list[bytes]) -> dict[str, float]:
    """Milliseconds per photo in each stage, in this process (the same steps as ``analyze``)."""
    engine = runtime.face_models()
    totals = dict.fromkeys(("decode", "detect", "embed", "store"), 0.0)
    for data in batch:
        t0 = time.perf_counter()
        decoded = decode_image(data, max_side=ALIGN_SIDE)
        pixels = np.asarray(decoded.image)
        t1 = time.perf_counter()
        rows = detection.find_faces(engine, pixels)
        t2 = time.perf_counter()
        faces = []
        for row in rows:
            vector = engine.embed(alignment.aligned_face(pixels, row))
            faces.append(AnalyzedFace(
                box=detection.relative_box(row, pixels.shape), confidence=float(row[14]) * 100,
                landmarks=[], quality=0, searchable=True, embedding=vector.tobytes(),
            ))
        t3 = time.perf_counter()
        store(decoded.image, faces)
        t4 = time.perf_counter()
        for name, spent in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            totals[name] += spent
    return {name: 1000 * spent / len(batch) for name, spent in totals.items()}


# ------------------------------------------------------- recall and its cost


def additions_cost(batch: list[bytes], rounds: int) -> dict[str, tuple[float, float, int]]:
    """Per step of ADDITIONS: ms per photo (one process), photos/s (two), faces found.

    The milliseconds are the least of three runs of each photo, the steps taking
    turns photo by photo; the two-process runs take turns round by round. Both
    keep a busy machine's drift out of the ratios.
    """
    runtime.face_models()
    spent = dict.fromkeys((name for name, _ in ADDITIONS), 0.0)
    faces = dict.fromkeys(spent, 0)
    for data in batch:
        for name, options in ADDITIONS:
            detection.OPTIONS = options
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                found = analyze(data)
                best = min(best, time.perf_counter() - start)
            spent[name] += best
            faces[name] += len(found.faces)
    detection.OPTIONS = ENGINE
    rates = dict.fromkeys(spent, 0.0)
    for _ in range(rounds):
        for name, options in ADDITIONS:
            rates[name] += throughput(batch, 2, 1, options)[0] / rounds
    return {name: (1000 * spent[name] / len(batch), rates[name], faces[name]) for name in spent}


def recall_table(quick: bool) -> None:
    """Rank-1 per condition: the engine, the engine before its new steps, OpenCV's own classes."""
    samples = build(FIXTURES)
    folder = runtime.model_dir()
    finders = {"engine": engine_finder(analyze)}
    if not quick:
        finders["before"] = engine_finder(analyze)
    finders["OpenCV"] = opencv_finder(
        str(folder / runtime.MODEL_FILES["detector"][0]), str(folder / runtime.MODEL_FILES["recognizer"][0])
    )
    scores = {}
    for name, find in finders.items():
        detection.OPTIONS = BEFORE if name == "before" else ENGINE
        start = time.perf_counter()
        scores[name] = recall(samples, find)
        print(f"  {name}: {len(samples)} images in {time.perf_counter() - start:.0f} s")
    detection.OPTIONS = ENGINE
    print("(the engine's columns: faces searched, faces under 20 px found, group faces found again,"
          " faces where the clean photo has none, searched faces whose best same / other person is >= 80)")
    print(f"{'condition':<10}" + "".join(f"{name + ' rank-1':>16}" for name in scores) + f"{'queries':>9}"
          f"{'tiny':>7}{'groups':>8}{'extra':>7}{'>=80 same/other':>17}")
    for condition in CONDITIONS:
        ours = scores["engine"][condition]
        cells = "".join(f"{s[condition].rank1:>16.3f}" for s in scores.values())
        print(f"{condition:<10}{cells}{ours.queries:>9}{f'{ours.tiny_found}/{ours.tiny}':>7}"
              f"{f'{ours.group_found}/{ours.group_faces}':>8}{ours.extra:>7}"
              f"{f'{ours.same_pass}/{ours.other_pass}':>17}")


# ------------------------------------------------------------------- search


def synthetic(n: int, seed: int = 0) -> vectors.OwnerMatrix:
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((n, vectors.DIM), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return vectors.OwnerMatrix(version=1, face_ids=[f"{i:032x}" for i in range(n)], matrix=matrix)


def latency(entry: vectors.OwnerMatrix, runs: int) -> tuple[float, float]:
    rng = np.random.default_rng(1)
    timings = []
    for _ in range(runs):
        query = entry.matrix[rng.integers(len(entry.matrix))] + rng.normal(0, 0.05, vectors.DIM)
        query = (query / np.linalg.norm(query)).astype(np.float32)
        start = time.perf_counter()
        vectors.search_matrix(entry, query, limit=50, threshold=80)
        timings.append(time.perf_counter() - start)
    return float(np.percentile(timings, 50) * 1000), float(np.percentile(timings, 95) * 1000)


def memory_mb(entry: vectors.OwnerMatrix) -> float:
    ids = sys.getsizeof(entry.face_ids) + sum(sys.getsizeof(i) for i in entry.face_ids)
    return (entry.matrix.nbytes + ids) / 1024 / 1024


def db_load(n: int) -> float:
    """Seconds to read one owner's n faces from the database into a matrix."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from indexing.models import Face, Photo, Post, Source

    call_command("migrate", verbosity=0)
    owner = get_user_model().objects.create_user(username=f"bench{time.time_ns()}", password=None)
    source = Source.objects.create(owner=owner, kind=Source.Kind.UPLOAD, name="bench")
    post = Post.objects.create(owner=owner, source=source, external_id="bench")
    photo = Photo.objects.create(owner=owner, post=post, external_id="bench")
    entry = synthetic(n)
    Face.objects.bulk_create(
        (
            Face(owner=owner, photo=photo, engine="local", engine_face_id=face_id, box_x=0, box_y=0,
                 box_w=0.1, box_h=0.1, confidence=99, embedding=entry.matrix[i].tobytes())
            for i, face_id in enumerate(entry.face_ids)
        ),
        batch_size=2000,
    )
    start = time.perf_counter()
    loaded = vectors.load_owner_matrix(owner.pk)
    elapsed = time.perf_counter() - start
    assert np.array_equal(loaded.matrix, entry.matrix)
    return elapsed


def selfie(entry: vectors.OwnerMatrix, runs: int) -> tuple[float, float]:
    """Decode + detect + embed + search for a 1280x720 JPEG against one owner's matrix."""
    with Image.open(FIXTURES / "people/barack_obama/4.jpg") as image:
        data = encode_jpeg(image.convert("RGB").resize((1280, 720)), quality=90)
    timings = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        analysis = analyze(data, embed=False)
        vectors.search_matrix(entry, analysis.embedding(0), limit=50, threshold=80)
        timings.append(time.perf_counter() - start)
    timings = timings[1:]
    return float(np.percentile(timings, 50) * 1000), float(np.percentile(timings, 95) * 1000)


SECTIONS = ("index", "recall", "cost", "search")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer photos and runs")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"some of {','.join(SECTIONS)}")
    args = parser.parse_args()
    rounds = 1 if args.quick else 3
    sections = set(args.only.split(","))

    print(f"CPUs: {os.cpu_count()}   load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    batch = photos() * rounds
    if "index" in sections:
        index_tables(batch, rounds)
    if "recall" in sections:
        print("\nRecall on the fixtures tilted, turned and shrunk (rank-1 against the clean library)")
        recall_table(args.quick)
    if "cost" in sections:
        print("\nWhat each step costs (1080 px fixtures; ms: one process, least of 3; photos/s: 2 processes)")
        costs = additions_cost(batch[: len(batch) // rounds], rounds)
        first_ms, first_rate, _ = next(iter(costs.values()))
        print(f"{'step':<36}{'ms/photo':>10}{'x':>7}{'photos/s':>10}{'x':>7}{'faces':>7}")
        for name, (ms, rate, faces) in costs.items():
            ratios = f"{ms / first_ms:>7.2f}{rate:>10.1f}{rate / first_rate:>7.2f}"
            print(f"{name:<36}{ms:>10.1f}{ratios}{faces:>7}")
    if "search" in sections:
        search_tables(args.quick)


def index_tables(batch: list[bytes], rounds: int) -> None:
    print(f"\nIndexing {len(batch)} photos at {LONG_SIDE} px ({len(batch) // rounds} fixtures)")
    print(f"{'workers':<24}{'photos/s':>10}{'faces':>8}")
    for processes, threads in ((1, 1), (2, 1), (1, 2)):
        rate, faces = throughput(batch, processes, threads)
        label = f"{processes} process{'es' * (processes > 1)} x {threads} thread{'s' * (threads > 1)}"
        print(f"{label:<24}{rate:>10.1f}{faces:>8}")
    runtime.face_models()  # this process: one OpenCV and one BLAS thread, as the engine sets
    split = stages(batch[: len(batch) // rounds])
    print("\nMilliseconds per photo, one process, one thread")
    print("  ".join(f"{name} {ms:.1f}" for name, ms in split.items()) + f"  total {sum(split.values()):.1f}")


def search_tables(quick: bool) -> None:
    print("\nSearch (top 50 at similarity >= 80) in one tenant, synthetic embeddings")
    print(f"{'faces':>10}{'p50 ms':>10}{'p95 ms':>10}{'memory MB':>12}")
    entries = {}
    for n in (1_000, 10_000, 100_000, 1_000_000):
        entry = synthetic(n)
        runs = 50 if n >= 1_000_000 else 300
        p50, p95 = latency(entry, runs if not quick else max(20, runs // 5))
        print(f"{n:>10,}{p50:>10.2f}{p95:>10.2f}{memory_mb(entry):>12.1f}")
        if n == 100_000:
            entries[n] = entry
        del entry
    print(f"\nDB load of one owner's matrix, 10,000 faces: {db_load(10_000) * 1000:.0f} ms")
    p50, p95 = selfie(entries[100_000], 5 if quick else 15)
    print(f"Selfie search end to end at 100,000 faces: p50 {p50:.0f} ms, p95 {p95:.0f} ms")


if __name__ == "__main__":
    main()
