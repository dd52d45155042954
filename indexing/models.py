"""Where photos come from, the faces found in them, and the runs that index them.

Every row carries its owner so that each query can filter by tenant without a
join: a user can never see, search or infer another user's photos or faces.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.db import models
from django.db.models import F
from django.utils import timezone

OWNER = settings.AUTH_USER_MODEL


class Source(models.Model):
    """One place photos come from: a linked Instagram account, an export ZIP or uploads."""

    class Kind(models.TextChoices):
        INSTAGRAM = "instagram", "Instagram account"
        EXPORT = "export", "Instagram export ZIP"
        UPLOAD = "upload", "Uploaded photos"

    owner = models.ForeignKey(OWNER, on_delete=models.CASCADE, related_name="sources")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=200)
    social_account = models.ForeignKey(
        "socialaccount.SocialAccount",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="faces_sources",
    )
    archive = models.FileField(max_length=300, blank=True, help_text="The uploaded export ZIP.")
    # Incremental sync: the newest post timestamp seen by the last complete crawl.
    newest_post_at = models.DateTimeField(null=True, blank=True)
    needs_reconnect = models.BooleanField(
        default=False, help_text="The Instagram token expired or was revoked."
    )
    active = models.BooleanField(default=True, help_text="Unlinked sources are not crawled.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "kind"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.name}"


class IndexRun(models.Model):
    """Progress of one crawl or import. Counters only ever move through F() updates."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        CRAWLING = "crawling", "Finding posts"
        INDEXING = "indexing", "Indexing"
        WAITING = "waiting", "Waiting (rate limited)"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (Status.QUEUED, Status.CRAWLING, Status.INDEXING, Status.WAITING)

    owner = models.ForeignKey(OWNER, on_delete=models.CASCADE, related_name="index_runs")
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    posts_total = models.PositiveIntegerField(default=0)
    posts_done = models.PositiveIntegerField(default=0)
    posts_failed = models.PositiveIntegerField(default=0)
    photos_done = models.PositiveIntegerField(default=0)
    faces_found = models.PositiveIntegerField(default=0)
    posts_skipped = models.PositiveIntegerField(
        default=0, help_text="Media without an image (e.g. copyright-flagged)."
    )
    photos_fetched = models.PositiveIntegerField(default=0, help_text="Originals downloaded or stored.")
    # The listing's place: the paging cursor of the next page to list, so a
    # rate-limit wait, a killed worker or a restart resumes there and no page
    # is listed twice in a run (never a URL: paging links carry the token).
    cursor = models.TextField(blank=True)
    pages_listed = models.PositiveIntegerField(default=0)
    listed_at = models.DateTimeField(null=True, blank=True, help_text="The listing reached its last page.")
    listing_until = models.DateTimeField(
        null=True, blank=True, help_text="A crawl is fetching the page at the cursor until then."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    crawled_at = models.DateTimeField(null=True, blank=True, help_text="Every post was found.")
    finished_at = models.DateTimeField(null=True, blank=True)
    resume_at = models.DateTimeField(null=True, blank=True, help_text="Rate-limit wait ends.")
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "-created_at"]), models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"Run {self.pk} ({self.get_status_display()})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def posts_finished(self) -> int:
        return self.posts_done + self.posts_failed

    @property
    def percent(self) -> int:
        if not self.posts_total:
            return 100 if self.status == self.Status.DONE else 0
        return min(100, round(100 * self.posts_finished / self.posts_total))

    def add(self, **deltas: int) -> None:
        """Increment counters atomically in the database (never read-modify-write)."""
        IndexRun.objects.filter(pk=self.pk).update(
            **{name: F(name) + value for name, value in deltas.items() if value}
        )


class Post(models.Model):
    """One Instagram media, or one imported item (an export post or an uploaded photo)."""

    class MediaType(models.TextChoices):
        IMAGE = "IMAGE", "Photo"
        CAROUSEL = "CAROUSEL_ALBUM", "Carousel"
        VIDEO = "VIDEO", "Video"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        INDEXED = "indexed", "Indexed"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    owner = models.ForeignKey(OWNER, on_delete=models.CASCADE, related_name="posts")
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="posts")
    run = models.ForeignKey(
        IndexRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="posts"
    )
    external_id = models.CharField(max_length=500)
    media_type = models.CharField(max_length=20, choices=MediaType.choices, default=MediaType.IMAGE)
    permalink = models.URLField(max_length=500, blank=True)
    caption = models.TextField(blank=True)
    timestamp = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    indexed_at = models.DateTimeField(null=True, blank=True)
    deleted_upstream = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-timestamp", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["source", "external_id"], name="post_unique_per_source")
        ]
        indexes = [
            models.Index(fields=["owner", "-timestamp"]),
            models.Index(fields=["run", "status"]),
        ]

    def __str__(self) -> str:
        return f"Post {self.external_id}"


class Photo(models.Model):
    """One image or video of a post; a carousel has several.

    A video keeps its file in ``video`` (or ``video_url`` until downloaded) and
    its cover, or a frame of it, in ``original``, so every page that shows a
    picture of it works as for photos.
    """

    class Kind(models.TextChoices):
        IMAGE = "image", "Photo"
        VIDEO = "video", "Video"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        INDEXED = "indexed", "Indexed"
        FAILED = "failed", "Failed"

    owner = models.ForeignKey(OWNER, on_delete=models.CASCADE, related_name="photos")
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="photos")
    external_id = models.CharField(max_length=500)
    position = models.PositiveSmallIntegerField(default=0)
    media_url = models.TextField(blank=True, help_text="Upstream URL; may expire.")
    original = models.FileField(max_length=300, blank=True)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.IMAGE)
    video = models.FileField(max_length=300, blank=True, help_text="The stored video file (videos only).")
    video_url = models.TextField(blank=True, help_text="Upstream video URL; may expire.")
    duration = models.FloatField(null=True, blank=True, help_text="Seconds (videos only).")
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    indexed_at = models.DateTimeField(null=True, blank=True)
    faces_skipped = models.PositiveSmallIntegerField(
        default=0, help_text="Faces found but too small, blurry or unsure to search."
    )

    class Meta:
        ordering = ["post", "position"]
        constraints = [
            models.UniqueConstraint(fields=["post", "external_id"], name="photo_unique_per_post")
        ]
        indexes = [models.Index(fields=["owner", "sha256"])]

    def __str__(self) -> str:
        return f"Photo {self.external_id}"


class Person(models.Model):
    """A named group of one owner's faces ("Me", "Mom")."""

    owner = models.ForeignKey(OWNER, on_delete=models.CASCADE, related_name="people")
    name = models.CharField(max_length=100, blank=True)
    cover_face = models.ForeignKey(
        "Face", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    is_me = models.BooleanField(default=False)
    hidden = models.BooleanField(default=False)
    rekognition_user_id = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        verbose_name_plural = "people"
        indexes = [models.Index(fields=["owner", "hidden"])]

    def __str__(self) -> str:
        return self.name or f"Person {self.pk}"


class Face(models.Model):
    """One face found in a photo, mirrored from the engine that indexed it."""

    owner = models.ForeignKey(OWNER, on_delete=models.CASCADE, related_name="faces")
    photo = models.ForeignKey(Photo, on_delete=models.CASCADE, related_name="faces")
    engine = models.CharField(max_length=16)
    engine_face_id = models.CharField(max_length=64)
    # Relative box like Rekognition's BoundingBox: fractions of width and height.
    box_x = models.FloatField()
    box_y = models.FloatField()
    box_w = models.FloatField()
    box_h = models.FloatField()
    confidence = models.FloatField(help_text="Detection confidence, 0-100.")
    quality = models.FloatField(default=0, help_text="Sharpness/size score, 0-100.")
    landmarks = models.JSONField(default=list, blank=True)
    embedding = models.BinaryField(null=True, blank=True, editable=False)
    searchable = models.BooleanField(
        default=True, help_text="Too small or unsure faces are kept out of search."
    )
    person = models.ForeignKey(
        Person, on_delete=models.SET_NULL, null=True, blank=True, related_name="faces"
    )
    person_locked = models.BooleanField(
        default=False, help_text="Set by the user; automatic grouping never changes it."
    )
    grouped_at = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="When automatic grouping last considered this face; empty means new to it.",
    )
    thumbnail = models.ImageField(max_length=300, blank=True)
    # Videos: the moment (seconds) the face first appears, and the frame its box is on.
    seen_at = models.FloatField(null=True, blank=True)
    frame = models.ImageField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "engine", "engine_face_id"], name="face_unique_per_owner_engine"
            )
        ]
        indexes = [
            models.Index(fields=["owner", "engine", "searchable"]),
            models.Index(fields=["owner", "person"]),
        ]

    def __str__(self) -> str:
        return f"Face {self.engine}:{self.engine_face_id}"

    @property
    def box(self) -> list[float]:
        return [self.box_x, self.box_y, self.box_w, self.box_h]


class FaceCollection(models.Model):
    """One engine collection per user; ``version`` moves on every change to its faces.

    The local engine caches each owner's embedding matrix per process and
    reloads it when the version it holds is older than this one.
    """

    owner = models.ForeignKey(OWNER, on_delete=models.CASCADE, related_name="face_collections")
    engine = models.CharField(max_length=16)
    external_id = models.CharField(max_length=255, blank=True)
    version = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "engine"], name="one_collection_per_engine")
        ]

    def __str__(self) -> str:
        return f"{self.engine} collection of {self.owner}"

    @staticmethod
    def fresh_version() -> int:
        """The first version of a new collection: later than any version before it.

        A collection deleted with the user's face data and created again must
        not count 1, 2, 3 again: another process still caching the deleted
        faces under version 3 would take them for current.
        """
        return time.time_ns() // 1000

    @classmethod
    def bump(cls, owner_id: int, engine: str) -> None:
        """Mark the owner's collection changed, creating it on first use."""
        updated = cls.objects.filter(owner_id=owner_id, engine=engine).update(
            version=F("version") + 1
        )
        if not updated:
            cls.objects.get_or_create(
                owner_id=owner_id, engine=engine, defaults={"version": cls.fresh_version()}
            )


class UnindexedFace(models.Model):
    """A face the engine saw but would not index, with its reasons (Rekognition)."""

    owner = models.ForeignKey(OWNER, on_delete=models.CASCADE, related_name="+")
    photo = models.ForeignKey(Photo, on_delete=models.CASCADE, related_name="unindexed_faces")
    engine = models.CharField(max_length=16)
    reasons = models.JSONField(default=list)
    box = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)
