"""Group a user's faces into people now, or repair the engine's copy of their people (Rekognition Users)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from indexing.engines import get_engine
from indexing.management.users import command_user
from indexing.people import grouping


class Command(BaseCommand):
    help = (
        "Group the faces of a user's library into people (local engine): the new faces, "
        "or every unlocked face with --full. --users re-syncs named people to Rekognition Users."
    )

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="email of the library's owner")
        parser.add_argument("--full", action="store_true", help="let every unlocked face vote again")
        parser.add_argument("--users", action="store_true", help="sync named people to Rekognition Users")
        parser.add_argument("--json", action="store_true", help="print one JSON summary object")

    def handle(self, *args, **options):
        user = command_user(options["user"])
        report = grouping.regroup(user.pk) if options["full"] else grouping.group_new_faces(user.pk)
        summary = {
            "user": user.email,
            "faces": report.faces,
            "considered": report.considered,
            "assigned": report.assigned,
            "unassigned": report.unassigned,
            "new_people": report.new_people,
            "deleted_people": report.deleted_people,
            "seconds": report.seconds,
            "skipped": report.skipped,
        }
        if options["users"]:
            # The key keeps its name: it is part of the command's JSON output.
            summary["rekognition_users"] = get_engine().sync_people(user)
        if options["json"]:
            self.stdout.write(json.dumps(summary))
        elif report.skipped:
            self.stdout.write(f"{user.email}: {report.skipped}")
        else:
            self.stdout.write(
                f"{user.email}: {report.considered} of {report.faces} faces considered, {report.assigned} placed, "
                f"{report.new_people} new people in {report.seconds:.1f} s"
            )
