"""Import image files, folders or Instagram export ZIPs for a user."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from indexing import pipeline
from indexing.imports import IMAGE_SUFFIXES, import_export_zip, import_photos, is_zip, iter_folder
from indexing.management.users import consenting_user
from indexing.models import IndexRun


class Command(BaseCommand):
    help = "Import photos (files, folders, Instagram export ZIPs) into a user's library."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="email of the library's owner")
        parser.add_argument(
            "--create-user",
            action="store_true",
            help="create the user if missing; the operator confirms the user consented to face processing",
        )
        parser.add_argument("--sync", action="store_true", help="index in this process and wait until done")
        parser.add_argument("--json", action="store_true", help="print one JSON summary object")
        parser.add_argument("paths", nargs="+")

    def handle(self, *args, **options):
        user = consenting_user(options["user"], create=options["create_user"], via="faces_import --create-user")
        photos: list[tuple[str, bytes]] = []
        archives: list[Path] = []
        for raw in options["paths"]:
            path = Path(raw)
            if path.is_dir():
                photos.extend(iter_folder(path))
            elif path.is_file():
                with path.open("rb") as handle:
                    head = handle.read(4)
                if is_zip(head):
                    archives.append(path)
                else:
                    photos.append((path.name, path.read_bytes()))
            else:
                raise CommandError(f"No such file or folder: {raw}")
        if not photos and not archives:
            raise CommandError(f"No images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))}).")

        runs: list[IndexRun] = []
        summary = {"photos_added": 0, "duplicates": 0, "rejected": []}
        if photos:
            name = ", ".join(options["paths"])[:200]
            upload = import_photos(user, photos, name=name)
            summary["photos_added"] += upload.added
            summary["duplicates"] += upload.duplicates
            summary["rejected"] += upload.rejected
            if upload.source is not None:
                runs.append(pipeline.start_run(upload.source, sync=options["sync"]))
        for archive in archives:
            with archive.open("rb") as handle:
                source = import_export_zip(user, handle, name=f"Instagram export {archive.name}")
            runs.append(pipeline.start_run(source, sync=options["sync"]))
        self._report(runs, summary, options)

    def _report(self, runs: list[IndexRun], summary: dict, options) -> None:
        runs = [IndexRun.objects.get(pk=run.pk) for run in runs]
        if not options["json"]:
            for run in runs:
                self.stdout.write(f"run {run.pk}: {run.get_status_display()}")
            return
        totals = {
            key: sum(getattr(run, key) for run in runs)
            for key in ("posts_total", "posts_done", "posts_failed", "photos_done", "faces_found")
        }
        statuses = {run.status for run in runs}
        self.stdout.write(
            json.dumps(
                {
                    "user": options["user"],
                    "run_ids": [run.pk for run in runs],
                    "status": statuses.pop() if len(statuses) == 1 else sorted(statuses),
                    **summary,
                    **totals,
                }
            )
        )
