"""Admin for consent records and staff access logs; keeps OAuth tokens out of sight.

``StaffAuditMixin`` records what staff look at and change in user data
(``StaffAccessLog``); the indexing admin uses it too.
"""

from __future__ import annotations

from functools import wraps

from allauth.socialaccount.models import SocialApp, SocialToken
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import Model
from django.http import HttpRequest, HttpResponse

from .models import FaceConsent, StaffAccessLog
from .sessions import end_sessions


def audit_repr(obj: Model) -> str:
    """Ids only: the log must not keep personal data of a deleted user."""
    owner = getattr(obj, "owner_id", None) or getattr(obj, "user_id", None)
    text = f"{obj._meta.label} {obj.pk}"
    return f"{text} of user {owner}" if owner else text


def ids_repr(model: type[Model], ids: list) -> str:
    """``indexing.IndexRun [3, 4]``, shortened to fit the log's column."""
    text = f"{model._meta.label} {ids}"
    return text if len(text) <= 200 else f"{model._meta.label} {len(ids)} objects {ids[:20]}"[:200]


class StaffAuditMixin:
    """Log staff views, changes and deletions of user data in ``StaffAccessLog``.

    Django's own LogEntry records changes too, but keeps ``str(obj)`` (an
    email, a file name) and goes away with the staff account; this log keeps
    ids only and survives both.
    """

    keep_admin_log = True  # also write Django's LogEntry

    def get_action(self, action):
        """Every action needs a permission view-only staff lack, and every run is logged.

        Django offers an action without ``allowed_permissions`` to anyone who
        may view the list, so such actions default to needing "change".
        Deleting is logged per object by ``log_deletions``.
        """
        found = super().get_action(action)
        if found is None:
            return None
        func, name, description = found
        if name == "delete_selected":
            return found

        @wraps(func)
        def audited(modeladmin, request: HttpRequest, queryset):
            ids = list(queryset.values_list("pk", flat=True))
            response = func(modeladmin, request, queryset)
            StaffAccessLog.objects.create(staff=request.user, action=name[:64], object_repr=ids_repr(self.model, ids))
            return response

        audited.allowed_permissions = getattr(func, "allowed_permissions", None) or ("change",)
        return audited, name, description

    def _audit(self, request: HttpRequest, action: str, objects) -> None:
        name = self.model._meta.model_name
        StaffAccessLog.objects.bulk_create(
            StaffAccessLog(staff=request.user, action=f"{action}_{name}", object_repr=audit_repr(obj))
            for obj in objects
        )

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None
    ) -> HttpResponse:
        response = super().change_view(request, object_id, form_url, extra_context)
        if request.method == "GET" and response.status_code == 200:
            obj = self.get_object(request, unquote(object_id))
            if obj is not None:
                self._audit(request, "view", [obj])
        return response

    def log_addition(self, request: HttpRequest, obj: Model, message):
        self._audit(request, "add", [obj])
        return super().log_addition(request, obj, message) if self.keep_admin_log else None

    def log_change(self, request: HttpRequest, obj: Model, message):
        self._audit(request, "change", [obj])
        return super().log_change(request, obj, message) if self.keep_admin_log else None

    def log_deletions(self, request: HttpRequest, queryset):
        self._audit(request, "delete", list(queryset))
        return super().log_deletions(request, queryset) if self.keep_admin_log else None

# Tokens and app secrets never appear in the admin: apps are configured by
# environment variables, tokens are for the crawler only.
for model in (SocialToken, SocialApp):
    if admin.site.is_registered(model):
        admin.site.unregister(model)


User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class AuditedUserAdmin(StaffAuditMixin, UserAdmin):
    """Django's user admin; viewing, changing and deleting users is logged.

    Deleting a user here deletes their photos, faces and engine collection
    (the indexing app's pre_delete receiver), as the account page does.
    """

    keep_admin_log = False  # LogEntry would keep the username of a deleted user

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        """A password set by staff signs the user out everywhere (but not the staff member)."""
        response = super().user_change_password(request, id, form_url)
        if request.method == "POST" and response.status_code == 302:
            end_sessions(int(unquote(id)), keep=request.session.session_key)
        return response


@admin.register(FaceConsent)
class FaceConsentAdmin(StaffAuditMixin, admin.ModelAdmin):
    list_display = ["user", "version", "accepted", "created_at"]
    list_filter = ["accepted", "version"]
    search_fields = ["user__email"]
    readonly_fields = ["user", "version", "accepted", "created_at", "ip_address", "user_agent"]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(StaffAccessLog)
class StaffAccessLogAdmin(admin.ModelAdmin):
    list_display = ["created_at", "staff", "action", "object_repr"]
    readonly_fields = ["created_at", "staff", "action", "object_repr"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
