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
from collections.abc import Callable
from typing import Any

import numpy as np

from ..base import Box

SURE_IOU = 0.5  # a lone face overlapping a track's last box this much continues it unembedded
EMBED_EVERY = 3  # ... but every third sighting of a track is embedded anyway
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
    vector: np.ndarray | Callable[[], np.ndarray]  # normalized float32, or how to compute it
    quality: float  # 0-100
    confidence: float  # 0-100
    searchable: bool = True
    payload: Any = None  # whatever the caller needs of the best sighting (its frame, landmarks)

    @property
    def embedding(self) -> np.ndarray:
        """The embedding, computed on first use: a face that surely continues a track needs none."""
        if callable(self.vector):
            self.vector = np.asarray(self.vector(), dtype=np.float32)
        return self.vector

    @property
    def embedded(self) -> bool:
        return not callable(self.vector)


@dataclass
class Track:
    first_seen: float
    last_seen: float
    last_box: Box
    best: Sighting
    total: np.ndarray  # sum of the sightings' embeddings
    sightings: int = 1
    times: set[float] = field(default_factory=set)  # the frames it was seen in
    unembedded: int = 0  # sightings since the last embedded one

    @property
    def embedding(self) -> np.ndarray:
        norm = float(np.linalg.norm(self.total))
        return (self.total / norm).astype(np.float32) if norm else self.total.astype(np.float32)

    def add(self, sighting: Sighting) -> None:
        self.last_seen = max(self.last_seen, sighting.time)
        self.last_box = sighting.box
        self.sightings += 1
        self.times.add(sighting.time)
        if sighting.embedded:
            self.total = self.total + sighting.embedding
            self.unembedded = 0
        else:
            self.unembedded += 1
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
            index = self._sure_continuation(sighting, sightings, claimed)
            if index is not None:
                self.tracks[index].add(sighting)
                claimed.add(index)
                continue
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

    def _sure_continuation(self, sighting: Sighting, frame: list[Sighting], claimed: set[int]) -> int | None:
        """The track this face continues beyond doubt (alone, barely moved), if any.

        Such a face is not embedded unless it is the track's best yet or the
        track went ``EMBED_EVERY`` sightings without an embedding.
        """
        near = [
            index for index, track in enumerate(self.tracks)
            if sighting.time - track.last_seen <= CONTINUE_GAP and track.last_box.iou(sighting.box) > 0.1
        ]
        if len(near) != 1 or near[0] in claimed:
            return None
        track = self.tracks[near[0]]
        if track.last_box.iou(sighting.box) < SURE_IOU:
            return None
        if sum(1 for other in frame if track.last_box.iou(other.box) > 0.1) != 1:
            return None
        if track.unembedded + 1 >= EMBED_EVERY or _rank(sighting) > _rank(track.best):
            sighting.embedding  # noqa: B018 - computed now, so the track's mean includes it
        return near[0]

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
