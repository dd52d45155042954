"""Admin for support staff: sources, runs, posts, photos and face metadata.

Staff can see what was imported and why something failed; they never see
embeddings or tokens. Looking at a user's photo, opening a record and every
change, deletion and action are logged (``StaffAccessLog``).
"""

from __future__ import annotations

from django.contrib import admin
from django.core.files.storage import default_storage
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from accounts.admin import StaffAuditMixin
from accounts.models import StaffAccessLog

from .models import Face, FaceCollection, IndexRun, Person, Photo, Post, Source
from .thumbnails import small_preview


@admin.register(Source)
class SourceAdmin(StaffAuditMixin, admin.ModelAdmin):
    list_display = ["id", "owner", "kind", "name", "active", "needs_reconnect", "created_at"]
    list_filter = ["kind", "active", "needs_reconnect"]
    search_fields = ["owner__email", "name"]
    raw_id_fields = ["owner", "social_account"]
    readonly_fields = ["created_at", "newest_post_at"]


@admin.register(IndexRun)
class IndexRunAdmin(StaffAuditMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "owner",
        "source",
        "status",
        "progress",
        "posts_failed",
        "photos_done",
        "faces_found",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status"]
    search_fields = ["owner__email"]
    raw_id_fields = ["owner", "source"]
    readonly_fields = [
        "posts_total",
        "posts_done",
        "posts_failed",
        "posts_skipped",
        "photos_done",
        "faces_found",
        "created_at",
        "started_at",
        "finished_at",
    ]
    actions = ["retry_failed_posts"]

    @admin.display(description="Progress")
    def progress(self, run: IndexRun) -> str:
        return format_html(
            '<progress max="100" value="{}"></progress> {}/{}', run.percent, run.posts_finished, run.posts_total
        )

    @admin.action(description="Retry failed posts of the selected runs")
    def retry_failed_posts(self, request: HttpRequest, queryset) -> None:
        from .pipeline import retry_failed

        count = sum(retry_failed(run) for run in queryset)
        StaffAccessLog.objects.create(
            staff=request.user, action="retry_failed_posts", object_repr=f"runs {list(queryset.values_list('pk', flat=True))}"
        )
        self.message_user(request, f"Re-queued {count} failed posts.")


class PhotoInline(admin.TabularInline):
    model = Photo
    fields = ["external_id", "status", "error", "width", "height"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(Post)
class PostAdmin(StaffAuditMixin, admin.ModelAdmin):
    list_display = ["id", "owner", "external_id", "media_type", "status", "timestamp", "error"]
    list_filter = ["status", "media_type"]
    search_fields = ["owner__email", "external_id"]
    raw_id_fields = ["owner", "source", "run"]
    inlines = [PhotoInline]


@admin.register(Photo)
class PhotoAdmin(StaffAuditMixin, admin.ModelAdmin):
    list_display = ["id", "owner", "external_id", "status", "width", "height", "indexed_at", "error"]
    list_filter = ["status"]
    search_fields = ["owner__email", "external_id", "sha256"]
    raw_id_fields = ["owner", "post"]
    readonly_fields = ["preview", "sha256", "original", "media_url", "indexed_at"]
    exclude = ["media_url"]

    @admin.display(description="Preview")
    def preview(self, photo: Photo) -> str:
        if not photo.pk or not photo.original:
            return "—"
        url = reverse("admin:indexing_photo_preview", args=[photo.pk])
        return format_html('<img src="{}" alt="" style="max-width:240px;max-height:240px">', url)

    def get_urls(self):
        urls = super().get_urls()
        preview = path(
            "<int:photo_id>/preview/",
            self.admin_site.admin_view(self.preview_view),
            name="indexing_photo_preview",
        )
        return [preview, *urls]

    def preview_view(self, request: HttpRequest, photo_id: int) -> HttpResponse:
        """A small downscaled copy of the photo for staff; every view is logged."""
        if not self.has_view_permission(request):
            raise Http404
        photo = get_object_or_404(Photo, pk=photo_id)
        if not photo.original:
            raise Http404
        with default_storage.open(photo.original.name, "rb") as handle:
            data = small_preview(handle.read())
        StaffAccessLog.objects.create(
            staff=request.user, action="view_photo_preview", object_repr=f"photo {photo.pk} of user {photo.owner_id}"
        )
        response = HttpResponse(data, content_type="image/jpeg")
        response["Cache-Control"] = "private, no-store"
        return response


@admin.register(Face)
class FaceAdmin(StaffAuditMixin, admin.ModelAdmin):
    """Face metadata only: no embedding, no thumbnail."""

    list_display = ["id", "owner", "photo", "engine", "confidence", "searchable", "person"]
    list_filter = ["engine", "searchable"]
    search_fields = ["owner__email", "engine_face_id"]
    fields = [
        "owner",
        "photo",
        "engine",
        "engine_face_id",
        "box_x",
        "box_y",
        "box_w",
        "box_h",
        "confidence",
        "quality",
        "searchable",
        "person",
        "created_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Person)
class PersonAdmin(StaffAuditMixin, admin.ModelAdmin):
    list_display = ["id", "owner", "name", "is_me", "hidden", "created_at"]
    search_fields = ["owner__email", "name"]
    raw_id_fields = ["owner", "cover_face"]


@admin.register(FaceCollection)
class FaceCollectionAdmin(StaffAuditMixin, admin.ModelAdmin):
    list_display = ["owner", "engine", "external_id", "version", "created_at"]
    readonly_fields = ["owner", "engine", "external_id", "version", "created_at"]
