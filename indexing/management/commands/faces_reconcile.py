"""Compare a user's Rekognition collection with the Face rows that mirror it.

They drift when a job dies between IndexFaces and the database commit (faces
in the collection nobody can see: orphans, still billed for storage) or when a
collection is lost or edited outside the product (rows whose FaceId
Rekognition no longer has: searches can never return them).

``--repair`` deletes orphans from the collection, deletes the missing rows
and puts their photos (and posts) back to pending so a retry indexes them again.
"""

from __future__ import annotations

import json

from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from indexing.engines import get_engine
from indexing.engines.base import EngineError
from indexing.management.users import command_user
from indexing.models import Face, FaceCollection, Photo, Post

ENGINE = "rekognition"


class Command(BaseCommand):
    help = "Compare a user's Rekognition collection with the database; --repair fixes the differences."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--user", required=True, metavar="EMAIL")
        parser.add_argument("--repair", action="store_true", help="Delete orphans and missing rows.")
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print one JSON object.")

    def handle(self, *args, user: str, repair: bool, as_json: bool, **options) -> None:
        owner = command_user(user)
        engine = get_engine(ENGINE)
        try:
            report = reconcile(engine, owner, repair=repair)
        except EngineError as exc:
            raise CommandError(str(exc)) from None
        report["user"] = owner.email
        if as_json:
            self.stdout.write(json.dumps(report, sort_keys=True))
            return
        self.stdout.write(
            f"Collection {report['collection']}: {report['faces_in_collection']} faces; "
            f"database: {report['faces_in_db']} faces."
        )
        self.stdout.write(f"Orphans (in the collection, not in the database): {len(report['orphans'])}")
        for face_id in report["orphans"]:
            self.stdout.write(f"  {face_id}")
        self.stdout.write(f"Missing (in the database, not in the collection): {len(report['missing'])}")
        for face_id in report["missing"]:
            self.stdout.write(f"  {face_id}")
        if repair:
            self.stdout.write(
                f"Repaired: deleted {report['orphans_deleted']} orphans and {report['rows_deleted']} rows; "
                f"{report['photos_to_reindex']} photos will be indexed again."
            )
        elif report["orphans"] or report["missing"]:
            self.stdout.write("Run again with --repair to fix these.")


def reconcile(engine, owner, repair: bool = False) -> dict:
    """Differences between the owner's collection and Face rows; fix them with ``repair``."""
    in_collection = {face.face_id: face.external_image_id for face in engine.list_faces(owner)}
    rows = dict(
        Face.objects.filter(owner=owner, engine=ENGINE).values_list("engine_face_id", "photo_id")
    )
    orphans = sorted(set(in_collection) - set(rows))
    missing = sorted(set(rows) - set(in_collection))
    report = {
        "collection": engine.collection_id(owner),
        "faces_in_collection": len(in_collection),
        "faces_in_db": len(rows),
        "orphans": orphans,
        "missing": missing,
        "repaired": repair,
        "orphans_deleted": 0,
        "rows_deleted": 0,
        "photos_to_reindex": 0,
    }
    if not repair:
        return report
    if orphans:
        engine.delete_faces(owner, orphans)
        report["orphans_deleted"] = len(orphans)
    if missing:
        faces = Face.objects.filter(owner=owner, engine=ENGINE, engine_face_id__in=missing)
        photo_ids = sorted({rows[face_id] for face_id in missing})
        thumbnails = [name for name in faces.values_list("thumbnail", flat=True) if name]
        with transaction.atomic():
            report["rows_deleted"] = faces.delete()[0]
            report["photos_to_reindex"] = Photo.objects.filter(owner=owner, pk__in=photo_ids).update(
                status=Photo.Status.PENDING, indexed_at=None
            )
            Post.objects.filter(owner=owner, photos__in=photo_ids, status=Post.Status.INDEXED).update(
                status=Post.Status.PENDING, indexed_at=None
            )
        for name in thumbnails:
            try:
                default_storage.delete(name)
            except Exception:  # already gone
                pass
    if orphans or missing:
        FaceCollection.bump(owner.pk, ENGINE)
    return report
