"""End a user's sessions when the account goes or the password changes (see ``accounts.sessions``)."""

from __future__ import annotations

from allauth.account.signals import password_changed, password_reset, password_set
from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete
from django.dispatch import receiver

from .sessions import end_sessions


@receiver(post_delete, sender=get_user_model(), dispatch_uid="accounts.end_sessions_of_deleted_user")
def end_sessions_of_deleted_user(sender, instance, **kwargs) -> None:
    end_sessions(instance.pk)


@receiver(password_changed, dispatch_uid="accounts.end_other_sessions_changed")
@receiver(password_set, dispatch_uid="accounts.end_other_sessions_set")
@receiver(password_reset, dispatch_uid="accounts.end_other_sessions_reset")
def end_other_sessions(sender, request, user, **kwargs) -> None:
    """Only the session that changed the password stays signed in."""
    end_sessions(user.pk, keep=getattr(getattr(request, "session", None), "session_key", None))
