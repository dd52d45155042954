"""Linking the faces of a video's sampled frames into tracks, one per person and moment.

A face joins the track it continues (the box overlaps the track's last box in
a recent frame and the embedding agrees loosely) or else the track whose face
it clearly is (embedding alone, at the people grouping's bar). When the video
is over, tracks of the same person seen in separate moments are merged, so a
person who leaves and comes back is one track or a few, never dozens. Each
track keeps only its best face (the frame it was seen best in), never all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .base import Box

CONTINUE_IOU = 0.3  # box overlap with the track's last box to count as the same face moving
CONTINUE_COSINE = 0.25  # ... with an embedding at least this close (guards against a swap)
CONTINUE_GAP = 2.5  # seconds: a track is only continued by box within this time
JOIN_COSINE = 0.4415  # embedding alone: the people grouping's edge (similarity 93)
MERGE_COSINE = 0.5  # two finished tracks whose mean embeddings are this close are one person


@dataclass
class Sighting:
    """One face in one sampled frame."""

    time: float
    box: Box
    embedding: np.ndarray  # normalized float32
    quality: float  # 0-100
    confidence: float  # 0-100
    searchable: bool = True
    payload: Any = None  # whatever the caller needs of the best sighting (its frame, landmarks)


@dataclass
class Track:
    first_seen: float
    last_seen: float
    last_box: Box
    best: Sighting
    total: np.ndarray  # sum of the sightings' embeddings
    sightings: int = 1
    times: set[float] = field(default_factory=set)  # the frames it was seen in

    @property
    def embedding(self) -> np.ndarray:
        norm = float(np.linalg.norm(self.total))
        return (self.total / norm).astype(np.float32) if norm else self.total.astype(np.float32)

    def add(self, sighting: Sighting) -> None:
        self.last_seen = max(self.last_seen, sighting.time)
        self.last_box = sighting.box
        self.total = self.total + sighting.embedding
        self.sightings += 1
        self.times.add(sighting.time)
        if _rank(sighting) > _rank(self.best):
            self.best = sighting

    def absorb(self, other: Track) -> None:
        self.first_seen = min(self.first_seen, other.first_seen)
        self.last_seen = max(self.last_seen, other.last_seen)
        self.total = self.total + other.total
        self.sightings += other.sightings
        self.times |= other.times
        if _rank(other.best) > _rank(self.best):
            self.best = other.best


@dataclass
class Tracker:
    """Feed it each frame's sightings in time order; ``finish()`` returns the tracks."""

    tracks: list[Track] = field(default_factory=list)
    max_tracks: int = 200

    def add_frame(self, sightings: list[Sighting]) -> None:
        claimed: set[int] = set()
        for sighting in sorted(sightings, key=_rank, reverse=True):
            index = self._match(sighting, claimed)
            if index is None:
                if len(self.tracks) >= self.max_tracks:
                    continue
                self.tracks.append(
                    Track(sighting.time, sighting.time, sighting.box, sighting, sighting.embedding.copy(),
                          times={sighting.time})
                )
                claimed.add(len(self.tracks) - 1)
            else:
                self.tracks[index].add(sighting)
                claimed.add(index)

    def _match(self, sighting: Sighting, claimed: set[int]) -> int | None:
        best, best_score = None, -1.0
        for index, track in enumerate(self.tracks):
            if index in claimed:
                continue
            cosine = float(track.embedding @ sighting.embedding)
            moving = (
                sighting.time - track.last_seen <= CONTINUE_GAP
                and track.last_box.iou(sighting.box) >= CONTINUE_IOU
                and cosine >= CONTINUE_COSINE
            )
            if (moving or cosine >= JOIN_COSINE) and cosine + (1.0 if moving else 0.0) > best_score:
                best, best_score = index, cosine + (1.0 if moving else 0.0)
        return best

    def finish(self) -> list[Track]:
        """Merge tracks of the same person (separate moments), first seen first."""
        tracks = sorted(self.tracks, key=lambda t: t.first_seen)
        merged: list[Track] = []
        for track in tracks:
            target = None
            for candidate in merged:
                if float(candidate.embedding @ track.embedding) >= MERGE_COSINE and not _overlap(candidate, track):
                    target = candidate
                    break
            if target is None:
                merged.append(track)
            else:
                target.absorb(track)
        return merged


def _overlap(a: Track, b: Track) -> bool:
    """Two tracks seen in the same frame are two people, however alike."""
    return not a.times.isdisjoint(b.times)


def _rank(sighting: Sighting) -> tuple[bool, float]:
    return (sighting.searchable, sighting.quality * sighting.box.area ** 0.25)
