"""Move libraries from one face engine to another, keeping people and names."""

from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from indexing.engines import ENGINES, get_engine
from indexing.images import ImageError
from indexing.management.users import command_user
from indexing.models import FaceCollection, Photo
from indexing.pipeline import reindex_photo


class Command(BaseCommand):
    help = (
        "Re-index every photo of a user (or of all users) with another engine. "
        "Set FACES_ENGINE to the new engine for the app once this is done."
    )

    def add_arguments(self, parser):
        parser.add_argument("--engine", required=True, choices=sorted(ENGINES))
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--user", help="email of one library's owner")
        target.add_argument("--all", action="store_true", help="every user's library")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **options):
        users = [command_user(options["user"])] if options["user"] else get_user_model().objects.order_by("pk")
        engine = get_engine(options["engine"])
        for user in users:
            report = {"user": user.email, "engine": engine.name, "photos": 0, "faces": 0, "failed": []}
            engine.ensure_collection(user)
            ids = list(Photo.objects.filter(owner=user, status=Photo.Status.INDEXED).values_list("pk", flat=True))
            for photo_id in ids:
                photo = Photo.objects.select_related("post__source", "owner").get(pk=photo_id)
                try:
                    report["faces"] += reindex_photo(engine, photo)
                    report["photos"] += 1
                except ImageError as exc:
                    report["failed"].append(f"{photo.external_id}: {exc}")
            for collection in FaceCollection.objects.filter(owner=user).exclude(engine=engine.name):
                get_engine(collection.engine).delete_collection(user)
                collection.delete()
            line = json.dumps(report) if options["json"] else (
                f"{user.email}: {report['photos']} photos, {report['faces']} faces now on {engine.name}"
                + (f", {len(report['failed'])} failed" if report["failed"] else "")
            )
            self.stdout.write(line)
