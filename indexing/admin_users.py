"""The user's admin page, with links to what support staff look at next.

The accounts app knows nothing of faces, so the links to a user's runs,
failed posts and photos are added here, on a subclass of its audited user
admin. They open the filtered lists; nothing on the user page itself shows
photos.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from accounts.admin import AuditedUserAdmin

from .models import IndexRun, Photo, Post

# The filter of the runs list (indexing/admin.py imports this module, so it is defined here).
HAS_FAILURES = Q(posts_failed__gt=0) | Q(status=IndexRun.Status.FAILED)

User = get_user_model()


class UserWithFacesAdmin(AuditedUserAdmin):
    readonly_fields = [*AuditedUserAdmin.readonly_fields, "faces_links"]

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        return [*fieldsets, ("Imports and photos", {"fields": ["faces_links"]})]

    @admin.display(description="Links")
    def faces_links(self, user) -> str:
        runs = IndexRun.objects.filter(owner=user)
        failed_posts = Post.objects.filter(owner=user, status=Post.Status.FAILED).count()
        links = [
            ("indexing_indexrun", f"owner__id__exact={user.pk}", f"Runs ({runs.count()})"),
            (
                "indexing_indexrun",
                f"owner__id__exact={user.pk}&has_failures=yes",
                f"Runs with failures ({runs.filter(HAS_FAILURES).count()})",
            ),
            ("indexing_post", f"owner__id__exact={user.pk}&status__exact=failed", f"Failed posts ({failed_posts})"),
            ("indexing_photo", f"owner__id__exact={user.pk}", f"Photos ({Photo.objects.filter(owner=user).count()})"),
        ]
        return format_html_join(
            " · ",
            '<a href="{}?{}">{}</a>',
            ((reverse(f"admin:{name}_changelist"), query, label) for name, query, label in links),
        ) or format_html("—")


if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, UserWithFacesAdmin)
