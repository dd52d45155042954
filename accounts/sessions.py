"""Sessions that know their user, so that all of a user's sessions can be ended.

Django's database sessions keep the user id inside the encoded session data,
so "every session of this user" means decoding the whole table. This backend
(``SESSION_ENGINE = "accounts.sessions"``, Django's documented way to extend
the database backend) also writes the id to an indexed column. Deleting an
account then removes every session still holding it (and the e-mail address
it leads to), and changing a password ends the user's other sessions instead
of leaving them in the store until they expire.
"""

from __future__ import annotations

from django.contrib.sessions.backends.db import SessionStore as DBStore

from .models import UserSession


class SessionStore(DBStore):
    @classmethod
    def get_model_class(cls):
        return UserSession

    def create_model_instance(self, data):
        obj = super().create_model_instance(data)
        try:
            obj.user_id = int(data.get("_auth_user_id"))
        except (TypeError, ValueError):
            obj.user_id = None
        return obj


def end_sessions(user_id: int, keep: str | None = None) -> int:
    """Delete the user's sessions except the session key ``keep``; returns how many."""
    sessions = UserSession.objects.filter(user_id=user_id)
    if keep:
        sessions = sessions.exclude(session_key=keep)
    deleted, _ = sessions.delete()
    return deleted
