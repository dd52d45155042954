"""Print a user's index runs, newest first, one JSON object per line."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from indexing.management.users import command_user
from indexing.models import IndexRun


class Command(BaseCommand):
    help = "Show a user's index runs as JSON lines."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True)
        parser.add_argument("--json", action="store_true", help="print JSON lines (the only format)")

    def handle(self, *args, **options):
        user = command_user(options["user"])
        for run in IndexRun.objects.filter(owner=user).order_by("-created_at", "-pk"):
            self.stdout.write(
                json.dumps(
                    {
                        "run_id": run.pk,
                        "status": run.status,
                        "posts_total": run.posts_total,
                        "posts_done": run.posts_done,
                        "posts_failed": run.posts_failed,
                        "photos_done": run.photos_done,
                        "faces_found": run.faces_found,
                    }
                )
            )
