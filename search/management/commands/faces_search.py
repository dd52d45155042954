"""Search a user's library with query images; one JSON line per image."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from indexing.engines.base import EngineError
from indexing.images import ImageError
from indexing.management.users import command_user
from search.services import search_by_image


class Command(BaseCommand):
    help = "Search a user's photos by the largest face in each query image."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="email of the library's owner")
        parser.add_argument("--limit", type=int, default=50)
        parser.add_argument("--threshold", type=float, default=None, help="minimum similarity, 0-100")
        parser.add_argument("--json", action="store_true", help="print JSON lines (the only format)")
        parser.add_argument("images", nargs="+")

    def handle(self, *args, **options):
        user = command_user(options["user"])
        failures = []
        for path in options["images"]:
            try:
                data = Path(path).read_bytes()
                result, matches = search_by_image(user, data, options["limit"], options["threshold"])
            except OSError as exc:
                failures.append(f"{path}: cannot read the file ({exc.strerror or exc}).")
                continue
            except (ImageError, EngineError) as exc:
                failures.append(f"{path}: {exc}")
                continue
            line = {
                "query": path,
                "faces_in_query": result.faces_in_query,
                "matches": [
                    {
                        "photo_id": m.face.photo_id,
                        "external_id": m.face.photo.external_id,
                        "face_id": m.face.engine_face_id,
                        "similarity": m.similarity,
                        "box": [round(v, 5) for v in m.face.box],
                    }
                    for m in matches
                ],
            }
            self.stdout.write(json.dumps(line))
        if failures:
            raise CommandError(" ".join(failures))
