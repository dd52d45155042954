"""Consent to biometric processing.

Faces are biometric data: nothing is imported or indexed until the user has
accepted the current consent text. Each acceptance or withdrawal is kept as a
row, so support can show what the user agreed to and when.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models

if TYPE_CHECKING:
    from django.http import HttpRequest


class ConsentQuerySet(models.QuerySet):
    def current(self) -> ConsentQuerySet:
        return self.filter(version=settings.FACES_CONSENT_VERSION)

    def record(
        self, user, accepted: bool = True, *, request: HttpRequest | None = None, user_agent: str = ""
    ) -> FaceConsent:
        """Keep one decision on the current consent text, with where it came from.

        Every consent row is written here, so each one names the text version
        and, when a person clicked, their address and browser.
        """
        ip_address = None
        if request is not None:
            ip_address = request.META.get("REMOTE_ADDR") or None
            user_agent = request.headers.get("User-Agent", "")
        return self.create(
            user=user,
            version=settings.FACES_CONSENT_VERSION,
            accepted=accepted,
            ip_address=ip_address,
            user_agent=user_agent[:300],
        )


class FaceConsent(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="face_consents"
    )
    version = models.CharField(max_length=32)
    accepted = models.BooleanField(help_text="False records a withdrawal.")
    created_at = models.DateTimeField(auto_now_add=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)

    objects = ConsentQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"])]
        verbose_name = "face-processing consent"

    def __str__(self) -> str:
        verb = "accepted" if self.accepted else "withdrew"
        return f"{self.user} {verb} v{self.version} at {self.created_at:%Y-%m-%d %H:%M}"


def has_face_consent(user) -> bool:
    """True when the user's latest consent decision accepts the current text."""
    if not getattr(user, "is_authenticated", False):
        return False
    latest = FaceConsent.objects.filter(user=user).values("version", "accepted").first()
    return bool(
        latest and latest["accepted"] and latest["version"] == settings.FACES_CONSENT_VERSION
    )


class StaffAccessLog(models.Model):
    """A support staff action on a user's data, kept for accountability."""

    staff = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    action = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.staff} {self.action} {self.object_repr}"
