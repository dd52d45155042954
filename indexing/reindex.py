"""Index a library again from its stored photos (after "Delete all face data").

Deleting face data keeps the photos and sets them pending; a run per source
then takes every pending post of that source (``crawl_source`` picks up the
unfinished posts of a source), so nothing is downloaded again for uploads and
export ZIPs. An unlinked Instagram account cannot be crawled, so its photos
wait until it is linked again; the caller says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import pipeline
from .models import IndexRun, Post, Source


@dataclass
class Reindex:
    runs: list[IndexRun] = field(default_factory=list)
    unlinked: list[Source] = field(default_factory=list)


def reindex_stored_photos(owner) -> Reindex:
    """Start a run for every source with posts waiting to be indexed; an active run is reused."""
    outcome = Reindex()
    waiting = Source.objects.filter(owner=owner, posts__status=Post.Status.PENDING).distinct().order_by("pk")
    for source in waiting:
        if source.kind == Source.Kind.INSTAGRAM and (not source.active or source.needs_reconnect):
            outcome.unlinked.append(source)
            continue
        outcome.runs.append(pipeline.active_run(source) or pipeline.start_run(source))
    return outcome
