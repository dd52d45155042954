"""What a user's library holds, counted one way for every page (home, Settings, empty states)."""

from __future__ import annotations

from .models import Face, IndexRun, Person, Photo, Source


def library_counts(owner) -> dict[str, int]:
    """Stored photos, indexed photos, faces, people, sources and running imports of ``owner``."""
    photos = Photo.objects.filter(owner=owner)
    return {
        "photos": photos.count(),
        "indexed_photos": photos.filter(status=Photo.Status.INDEXED).count(),
        "pending_photos": photos.filter(status=Photo.Status.PENDING).exclude(original="").count(),
        "faces": Face.objects.filter(owner=owner).count(),
        "people": Person.objects.filter(owner=owner).count(),
        "sources": Source.objects.filter(owner=owner).count(),
        "active_runs": IndexRun.objects.filter(owner=owner, status__in=IndexRun.ACTIVE).count(),
        "runs": IndexRun.objects.filter(owner=owner).count(),
    }


def needs_reindex(counts: dict[str, int]) -> bool:
    """Stored photos wait to be indexed and nothing runs (e.g. after deleting face data)."""
    return counts["pending_photos"] > 0 and not counts["active_runs"]
