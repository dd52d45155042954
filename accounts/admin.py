"""Admin for consent records and staff access logs; keeps OAuth tokens out of sight."""

from allauth.socialaccount.models import SocialApp, SocialToken
from django.contrib import admin

from .models import FaceConsent, StaffAccessLog

# Tokens and app secrets never appear in the admin: apps are configured by
# environment variables, tokens are for the crawler only.
for model in (SocialToken, SocialApp):
    if admin.site.is_registered(model):
        admin.site.unregister(model)


@admin.register(FaceConsent)
class FaceConsentAdmin(admin.ModelAdmin):
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
