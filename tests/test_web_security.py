"""Sign-up does not reveal registered addresses; private pages are not cached; the client IP behind a proxy."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from accounts.models import FaceConsent
from tests.conftest import PASSWORD, ROOT
from tests.test_foundation import confirm_email

pytestmark = pytest.mark.django_db


def sign_up(client: Client, email: str):
    return client.post(reverse("account_signup"), {"email": email, "password1": PASSWORD, "password2": PASSWORD},
                       follow=True)


def test_sign_up_answers_the_same_for_a_registered_address(user):
    known = sign_up(Client(), user.email)
    new = sign_up(Client(), "someone.new@example.com")
    assert known.status_code == new.status_code == 200
    assert [r[0] for r in known.redirect_chain] == [r[0] for r in new.redirect_chain]
    assert known.content.decode().replace(user.email, "X") == new.content.decode().replace(
        "someone.new@example.com", "X")
    assert "already" not in known.content.decode().lower()
    # Each address gets a mail that tells its owner what happened.
    to_known = [m for m in mail.outbox if user.email in m.to]
    assert len(to_known) == 1 and "already" in to_known[0].body.lower()


def test_the_new_user_signs_in_from_the_confirmation_mail():
    client = Client()
    page = sign_up(client, "new.person@example.com")
    assert "e-mail" in page.content.decode().lower() or "email" in page.content.decode().lower()
    assert client.get(reverse("privacy")).status_code == 302  # not signed in before confirming
    confirmed = confirm_email(client, "new.person@example.com")
    assert confirmed.status_code == 302
    assert client.get(reverse("privacy")).status_code == 200


PRIVATE_PAGES = ["home", "gallery", "search", "import", "privacy", "people", "consent", "delete_account"]


@pytest.mark.parametrize("name", PRIVATE_PAGES)
def test_signed_in_pages_are_not_cached(alice_client, name):
    response = alice_client.get(reverse(name))
    assert response.status_code == 200
    directives = {part.strip() for part in response["Cache-Control"].split(",")}
    assert {"private", "no-store"} <= directives


def test_admin_pages_are_not_cached_either(client, user):
    from django.contrib.auth import get_user_model

    get_user_model().objects.filter(pk=user.pk).update(is_staff=True, is_superuser=True)
    client.force_login(user)
    assert "no-store" in client.get(reverse("admin:index"))["Cache-Control"]


def failed_logins(client: Client, email: str, times: int, **headers) -> list[bool]:
    """True for each attempt that allauth let through to the password check."""
    url = reverse("account_login")
    answers = []
    for _ in range(times):
        text = client.post(url, {"login": email, "password": "wrong password"}, **headers).content.decode()
        answers.append("Too many failed login attempts" not in text)
    return answers


def test_behind_a_proxy_each_client_has_its_own_login_throttle(settings, user, other_user):
    settings.ACCOUNT_RATE_LIMITS = {"login_failed": "3/m/ip"}
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 1
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    assert failed_logins(Client(), user.email, 4, HTTP_X_FORWARDED_FOR="203.0.113.5", **proxy) == [True] * 3 + [False]
    # Another person behind the same proxy is not locked out by the first one's mistakes.
    assert failed_logins(Client(), other_user.email, 1, HTTP_X_FORWARDED_FOR="198.51.100.7", **proxy) == [True]


def test_without_a_proxy_forwarded_headers_are_ignored(settings, user):
    settings.ACCOUNT_RATE_LIMITS = {"login_failed": "3/m/ip"}
    client = Client()
    answers = [failed_logins(client, user.email, 1, HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")[0] for n in range(4)]
    assert answers == [True] * 3 + [False]  # a made-up X-Forwarded-For does not buy more attempts


def test_the_consent_record_keeps_the_client_address_behind_a_proxy(settings, client, db):
    from tests.conftest import make_user

    settings.ALLAUTH_TRUSTED_CLIENT_IP_HEADER = "X-Real-IP"
    carol = make_user("carol@example.com", consent=False)
    client.force_login(carol)
    client.post(reverse("consent"), {"agree": "on"}, HTTP_X_REAL_IP="203.0.113.9", REMOTE_ADDR="10.0.0.1")
    assert FaceConsent.objects.get(user=carol).ip_address == "203.0.113.9"


@pytest.mark.parametrize("env, expected", [
    ({}, "0 None None"),
    ({"BEHIND_PROXY": "1"}, "1 None ('HTTP_X_FORWARDED_PROTO', 'https')"),
    ({"BEHIND_PROXY": "1", "PROXY_COUNT": "2", "PROXY_CLIENT_IP_HEADER": "X-Real-IP"},
     "2 X-Real-IP ('HTTP_X_FORWARDED_PROTO', 'https')"),
    ({"PROXY_COUNT": "2", "PROXY_CLIENT_IP_HEADER": "X-Real-IP"}, "0 None None"),
])
def test_behind_proxy_settings_from_the_environment(tmp_path, env, expected):
    code = ("from django.conf import settings as s; "
            "print(s.ALLAUTH_TRUSTED_PROXY_COUNT, s.ALLAUTH_TRUSTED_CLIENT_IP_HEADER, s.SECURE_PROXY_SSL_HEADER)")
    base = {k: v for k, v in os.environ.items() if k not in {"BEHIND_PROXY", "PROXY_COUNT", "PROXY_CLIENT_IP_HEADER"}}
    result = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, capture_output=True,
                            text=True, env={**base, "FACES_DATA_DIR": str(tmp_path), **env}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == expected
