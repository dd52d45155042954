"""A user's sessions end with the account, and with a password change (except the one that made it)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import UserSession
from tests.conftest import PASSWORD, make_staff

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "another-horse-staple-41"


def signed_in(user, password: str = PASSWORD) -> Client:
    client = Client()
    response = client.post(reverse("account_login"), {"login": user.email, "password": password})
    assert response.status_code == 302, response
    return client


def stored_keys(user) -> set[str]:
    return set(UserSession.objects.filter(user_id=user.pk).values_list("session_key", flat=True))


def test_deleting_the_account_deletes_every_session_of_the_user(user, other_user):
    laptop, phone, bob = signed_in(user), signed_in(user), signed_in(other_user)
    assert len(stored_keys(user)) == 2
    response = laptop.post(reverse("delete_account"), {"confirm": "delete my account"})
    assert response.status_code == 302
    assert stored_keys(user) == set()
    assert not UserSession.objects.filter(session_key=phone.session.session_key).exists()
    assert phone.get(reverse("privacy")).status_code == 302  # the phone is signed out
    assert stored_keys(other_user) == {bob.session.session_key}  # nobody else's


def test_a_password_change_ends_the_other_sessions_and_keeps_this_one(user, other_user):
    laptop, phone, bob = signed_in(user), signed_in(user), signed_in(other_user)
    response = laptop.post(reverse("account_change_password"),
                           {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert response.status_code == 302
    assert stored_keys(user) == {laptop.session.session_key}
    assert laptop.get(reverse("privacy")).status_code == 200
    assert phone.get(reverse("privacy")).status_code == 302
    assert stored_keys(other_user) == {bob.session.session_key}  # nobody else's
    signed_in(user, NEW_PASSWORD)


def test_a_password_set_by_staff_signs_the_user_out_everywhere(user):
    laptop = signed_in(user)
    staff = make_staff("root@example.com", superuser=True)
    admin = signed_in(staff)
    response = admin.post(reverse("admin:auth_user_password_change", args=[user.pk]),
                          {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"})
    assert response.status_code == 302
    assert stored_keys(user) == set()
    assert laptop.get(reverse("privacy")).status_code == 302
    assert admin.get(reverse("admin:index")).status_code == 200
