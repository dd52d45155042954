"""The ``--user EMAIL`` every management command takes, looked up one way."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from accounts.models import FaceConsent, has_face_consent


def command_user(email: str):
    """The account with this email, in any case, or the command's one-line error."""
    user = get_user_model().objects.filter(email__iexact=email.strip()).first()
    if user is None:
        raise CommandError(f"Unknown user {email}.")
    return user


def consenting_user(email: str, *, create: bool, via: str):
    """The account for a command that processes faces: it must have accepted the consent text.

    With ``create`` (``faces_import --create-user``) a missing account is made
    without a usable password and its consent recorded on the operator's word,
    ``via`` naming the command in the consent row.
    """
    users = get_user_model().objects
    user = users.filter(email__iexact=email.strip()).first()
    if user is None:
        if not create:
            raise CommandError(f"Unknown user {email} (use --create-user to create it).")
        username = email.split("@")[0][:140] + "-" + str(users.count() + 1)
        user = users.create_user(username=username, email=email)
        user.set_unusable_password()
        user.save()
    if not has_face_consent(user):
        if not create:
            raise CommandError(f"{email} has not consented to face processing.")
        FaceConsent.objects.record(user, accepted=True, user_agent=via)
    return user
