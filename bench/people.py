"""People grouping figures: quality on the fixtures, speed at 50,000 faces.

Run from the repository root: ``.venv/bin/python bench/people.py [--faces N] [--centres M] [--sweep]``.

1. Fixtures: ``shared/fixtures/faces/people`` imported through the real
   pipeline (local engine, ``faces_import --sync``, which groups at the end);
   pairwise precision and recall against the folder identities (MANIFEST.csv),
   and a sweep of the edge threshold on the same embeddings.
2. A synthetic library: 50,000 normalized 128-d embeddings around 2,000
   centres. Centres share a common component so different people have
   cosine ~0.08 on average like SFace's (0.08 is the fixtures' median);
   each face is its centre plus Gaussian noise, its scale drawn per person
   and per face so same-person cosines spread around the fixtures' median of 0.74.
   Sizes follow Zipf's law (a few people in thousands of photos, a long tail of
   people seen once or twice), the hard case for a k-NN search. The faces are
   written as Face rows and grouped by the service itself
   (``indexing.people.grouping.group_new_faces``): database load, k-NN, Chinese
   Whispers and the writes.
3. 100 new faces (90 of known people, 10 of new ones) added to that library,
   grouped incrementally.

One BLAS thread, as in the workers (``FACES_ENGINE_THREADS``). The database is
a throwaway SQLite file unless ``BENCH_DATABASE_URL`` names another one (it is
migrated and written to).
"""

from __future__ import annotations

import argparse
import os
import time

from harness import FIXTURES, throwaway_django
from scoring import pairwise_scores

throwaway_django("faces-bench-people-", FACES_ENGINE="local")

import numpy as np  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from indexing.engines.local.runtime import set_threads  # noqa: E402
from indexing.engines.local.vectors import cosine_from_similarity  # noqa: E402
from indexing.people import clustering, grouping  # noqa: E402
from indexing.models import Face, Person, Photo, Post, Source  # noqa: E402

DIM = 128


def make_user(email: str):
    from django.contrib.auth import get_user_model

    from accounts.models import FaceConsent

    user = get_user_model().objects.create_user(username=email.split("@")[0], email=email, password="x-bench-9")
    FaceConsent.objects.record(user)
    return user


def synthetic(
    faces: int, centres: int, seed: int = 0, zipf: float = 1.0, bias: float = 0.33, spread=(0.45, 0.75)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings, identity per face, centres): see the module docstring."""
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(DIM)
    common /= np.linalg.norm(common)
    centre_vectors = rng.standard_normal((centres, DIM)) / np.sqrt(DIM) + bias * common
    centre_vectors /= np.linalg.norm(centre_vectors, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, centres + 1) ** zipf
    sizes = 1 + rng.multinomial(faces - centres, weights / weights.sum())
    identity = rng.permutation(np.repeat(np.arange(centres), sizes))
    scale = rng.uniform(*spread, centres)[identity] * rng.uniform(0.8, 1.25, faces)
    vectors = centre_vectors[identity] + scale[:, None] * rng.standard_normal((faces, DIM)) / np.sqrt(DIM)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), identity, centre_vectors


def noisy(centre_vectors: np.ndarray, which: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.45, 0.75, len(which))
    vectors = centre_vectors[which] + scale[:, None] * rng.standard_normal((len(which), DIM)) / np.sqrt(DIM)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def write_faces(user, vectors: np.ndarray, prefix: str) -> list[int]:
    """One post, photo and face per embedding, in bulk; returns the face pks in order."""
    source, _ = Source.objects.get_or_create(owner=user, kind=Source.Kind.UPLOAD, defaults={"name": "bench"})
    now = timezone.now()
    posts = Post.objects.bulk_create(
        [Post(owner=user, source=source, external_id=f"{prefix}{i}", status=Post.Status.INDEXED, timestamp=now)
         for i in range(len(vectors))], batch_size=5000)
    photos = Photo.objects.bulk_create(
        [Photo(owner=user, post=post, external_id=f"{post.external_id}.jpg", status=Photo.Status.INDEXED)
         for post in posts], batch_size=5000)
    faces = Face.objects.bulk_create(
        [Face(owner=user, photo=photo, engine="local", engine_face_id=f"{prefix}{i}", box_x=0.3, box_y=0.2,
              box_w=0.3, box_h=0.4, confidence=93.0, quality=95.0, embedding=vector.tobytes())
         for i, (photo, vector) in enumerate(zip(photos, vectors))], batch_size=5000)
    return [face.pk for face in faces]


def assignments(face_ids: list[int]) -> list:
    found = dict(Face.objects.filter(pk__in=face_ids).values_list("pk", "person_id"))
    return [found[pk] for pk in face_ids]


def fixtures_figures() -> None:
    user = make_user("fixtures@example.com")
    call_command("faces_import", "--user", user.email, "--sync", str(FIXTURES / "people"), verbosity=0)
    faces = list(Face.objects.filter(owner=user).select_related("photo").order_by("pk"))
    truth = [face.photo.external_id.split("/")[0] for face in faces]
    precision, recall = pairwise_scores(truth, [face.person_id for face in faces])
    print(f"fixtures people/: {len(faces)} faces of {len(set(truth))} identities -> "
          f"{Person.objects.filter(owner=user).count()} people")
    print(f"  pairwise precision {precision:.3f}, recall {recall:.3f}  (targets >= 0.98, >= 0.90)")
    matrix = np.stack([np.frombuffer(bytes(face.embedding), dtype=np.float32) for face in faces])
    sweep = []
    for similarity in (70, 80, 86, 90, 93, 96, 98, 98.5, 99):
        labels = clustering.cluster(matrix, min_cosine=cosine_from_similarity(similarity))
        p, r = pairwise_scores(truth, labels)
        sweep.append(f"{similarity:g}: {p:.2f}/{r:.2f}")
    print("  threshold sweep (similarity: precision/recall): " + ", ".join(sweep))
    scores = matrix @ matrix.T
    same = np.array([[a == b for b in truth] for a in truth])
    upper = np.triu(np.ones_like(same), 1)
    print(f"  same-person cosine min {scores[same & upper].min():.3f}, different-person max "
          f"{scores[~same & upper].max():.3f}; edge threshold cosine {clustering.EDGE_COSINE:.4f} "
          f"(similarity {clustering.EDGE_SIMILARITY:g})")


def synthetic_figures(faces: int, centres: int, sweep: bool = False) -> None:
    user = make_user("synthetic@example.com")
    vectors, identity, centre_vectors = synthetic(faces, centres)
    sizes = np.bincount(identity)
    started = time.perf_counter()
    ids = write_faces(user, vectors, "s")
    print(f"synthetic library: {faces} faces around {centres} centres (largest {sizes.max()}, "
          f"{(sizes == 1).sum()} seen once); rows written in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    report = grouping.group_new_faces(user.pk)
    seconds = time.perf_counter() - started
    precision, recall = pairwise_scores(identity.tolist(), assignments(ids))
    print(f"  full grouping: {seconds:.1f} s (target < 60 s); {report.new_people} people, "
          f"{report.assigned} faces assigned; stages {report.details.get('timings')}")
    print(f"  pairwise precision {precision:.4f}, recall {recall:.4f}")

    if sweep:
        rows = []
        for similarity in (80, 90, 93, 96, 98):
            labels = clustering.cluster(vectors, min_cosine=cosine_from_similarity(similarity))
            p, r = pairwise_scores(identity.tolist(), labels)
            rows.append(f"{similarity:g}: {p:.4f}/{r:.4f}")
        print("  threshold sweep (similarity: precision/recall): " + ", ".join(rows))

    rng = np.random.default_rng(1)
    known = rng.choice(np.flatnonzero(sizes >= 3), 90)
    fresh_centres = rng.standard_normal((5, DIM))
    fresh_centres /= np.linalg.norm(fresh_centres, axis=1, keepdims=True)
    fresh = noisy(fresh_centres, np.repeat(np.arange(5), 2), 2)
    new_vectors = np.concatenate([noisy(centre_vectors, known, 3), fresh])
    new_ids = write_faces(user, new_vectors, "n")
    started = time.perf_counter()
    report = grouping.group_new_faces(user.pk)
    seconds = time.perf_counter() - started
    # The 90 faces of known people should land with their people; the 5 new pairs form new people.
    placed = assignments(new_ids)
    home = {}
    for pk, person in Face.objects.filter(pk__in=ids).values_list("pk", "person_id"):
        home[pk] = person
    by_identity: dict[int, set] = {}
    for pk, ident in zip(ids, identity.tolist()):
        by_identity.setdefault(ident, set()).add(home[pk])
    joined = sum(1 for person, ident in zip(placed[:90], known) if person is not None and person in by_identity[ident])
    print(f"  incremental: 100 new faces into {faces}: {seconds:.2f} s (target < 2 s); {joined}/90 joined "
          f"their person, {report.new_people} new people from 5 new pairs; stages {report.details.get('timings')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=50_000)
    parser.add_argument("--centres", type=int, default=2_000)
    parser.add_argument("--skip-fixtures", action="store_true")
    parser.add_argument("--sweep", action="store_true", help="also sweep the threshold on the synthetic library")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    set_threads(settings.FACES_ENGINE_THREADS)
    print(f"database {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}, "
          f"{settings.FACES_ENGINE_THREADS} BLAS thread(s), {os.cpu_count()} cores")
    if not args.skip_fixtures:
        fixtures_figures()
    synthetic_figures(args.faces, args.centres, sweep=args.sweep)


if __name__ == "__main__":
    main()
