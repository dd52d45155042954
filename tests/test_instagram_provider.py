"""The ``instagram_login`` provider (accounts/instagram): Business Login, linking, answer parsing.

The OAuth dance runs against the loopback fake in ``tests/fakes/instagram.py``.
"""

from __future__ import annotations

import datetime as dt
import logging
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from allauth.socialaccount.models import SocialAccount, SocialToken
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from accounts.instagram.graph import error_of, json_object
from accounts.instagram.provider import InstagramLoginProvider
from accounts.instagram.views import InstagramLoginOAuth2Adapter
from indexing.instagram.client import InstagramClient
from indexing.sources import RateLimited
from tests.fakes.instagram import FakeInstagram, connect_instagram, fake_instagram  # noqa: F401

PROVIDER = InstagramLoginProvider.id


def oauth_dance(client, fake: FakeInstagram, data: dict | None = None, *, allow: bool = True):
    """POST to the provider, press Allow in the fake dialog, return the callback response."""
    start = client.post(reverse("instagram_login_login"), data or {})
    assert start.status_code == 302, start.content
    authorize = start["Location"]
    assert authorize.startswith(f"{fake.url}/oauth/authorize?")
    callback = urlsplit(fake.authorize(authorize, allow=allow))  # the "#_" fragment stays in the browser
    assert callback.path == reverse("instagram_login_callback")
    return client.get(callback.path, dict(parse_qsl(callback.query)))


def test_authorize_redirect_asks_for_business_basic(client, db, fake_instagram):
    start = client.post(reverse("instagram_login_login"))
    query = dict(parse_qsl(urlsplit(start["Location"]).query))
    assert query["client_id"] == fake_instagram.client_id
    assert query["scope"] == "instagram_business_basic"
    assert query["response_type"] == "code"
    assert query["redirect_uri"] == "http://testserver/accounts/instagram_login/login/callback/"
    assert query["state"]


def test_signup_with_instagram_asks_for_email_and_keeps_a_long_lived_token(client, db, fake_instagram):
    response = oauth_dance(client, fake_instagram)
    # Instagram gives no email address: allauth's signup form asks for one.
    assert response.status_code == 302 and response["Location"] == reverse("socialaccount_signup")
    form = client.get(reverse("socialaccount_signup"))
    assert form.status_code == 200 and b'name="email"' in form.content
    done = client.post(reverse("socialaccount_signup"), {"email": "insta@example.com"})
    assert done.status_code == 302

    user = get_user_model().objects.get(email="insta@example.com")
    assert client.session["_auth_user_id"] == str(user.pk)
    account = SocialAccount.objects.get(user=user, provider=PROVIDER)
    assert account.uid == "27182818284590452"  # all 17 digits, never through a float
    assert account.extra_data["username"] == "alice.faces"
    assert account.extra_data["user_id"] == "17841405822304914"
    token = SocialToken.objects.get(account=account)
    assert fake_instagram.tokens[token.token].kind == "long"
    assert dt.timedelta(days=59) < token.expires_at - timezone.now() < dt.timedelta(days=61)
    exchanges = fake_instagram.requests_to("/access_token")
    assert len(exchanges) == 1 and exchanges[0].query["grant_type"] == "ig_exchange_token"
    assert fake_instagram.requests_to("/me")[0].query["fields"] == "user_id,username"


def test_signup_email_of_an_existing_account_is_refused(client, user, fake_instagram):
    oauth_dance(client, fake_instagram)
    response = client.post(reverse("socialaccount_signup"), {"email": user.email})
    # Enumeration prevention: the same "verify your e-mail" answer as for a new address,
    # but nothing is linked to the existing account and nobody is signed in.
    assert response.status_code in (200, 302)
    assert not SocialAccount.objects.exists()
    assert "_auth_user_id" not in client.session


def test_connect_instagram_to_the_logged_in_account_then_log_in_with_it(alice_client, user, fake_instagram):
    response = oauth_dance(alice_client, fake_instagram, {"process": "connect"})
    assert response.status_code == 302
    assert response["Location"] == reverse("socialaccount_connections")
    account = SocialAccount.objects.get(provider=PROVIDER)
    assert account.user == user and account.uid == fake_instagram.app_user_id
    first_token = SocialToken.objects.get(account=account).token

    alice_client.post(reverse("account_logout"))
    again = oauth_dance(alice_client, fake_instagram)
    assert again.status_code == 302 and again["Location"] == "/"
    assert alice_client.session["_auth_user_id"] == str(user.pk)
    tokens = SocialToken.objects.filter(account=account)
    assert tokens.count() == 1 and tokens.get().token != first_token  # the new login's token is kept


def test_an_instagram_account_linked_elsewhere_is_not_taken_over(
    alice_client, user, other_user, fake_instagram
):
    connect_instagram(other_user, fake_instagram)
    response = oauth_dance(alice_client, fake_instagram, {"process": "connect"})
    assert response.status_code == 302
    assert SocialAccount.objects.get(provider=PROVIDER).user == other_user


def test_cancelling_the_dialog_links_nothing(client, db, fake_instagram):
    response = oauth_dance(client, fake_instagram, allow=False)
    assert response.status_code == 302 and response["Location"] == reverse("socialaccount_login_cancelled")
    assert not SocialAccount.objects.exists()


def test_refused_code_exchange_shows_an_error_and_links_nothing(client, db, fake_instagram, settings):
    providers = dict(settings.SOCIALACCOUNT_PROVIDERS)
    providers[PROVIDER] = {**providers[PROVIDER],
                                    "APPS": [{"client_id": fake_instagram.client_id, "secret": "wrong"}]}
    settings.SOCIALACCOUNT_PROVIDERS = providers
    response = oauth_dance(client, fake_instagram)
    assert response.status_code == 401
    assert not SocialAccount.objects.exists() and not SocialToken.objects.exists()


def test_tokens_never_reach_the_logs(client, db, fake_instagram, caplog):
    caplog.set_level(logging.DEBUG)
    for n in range(5):
        fake_instagram.add_post("IMAGE", caption=f"post {n}")
    oauth_dance(client, fake_instagram)
    client.post(reverse("socialaccount_signup"), {"email": "insta@example.com"})
    token = SocialToken.objects.get().token
    with InstagramClient(token, page_size=2) as ig:
        assert len(list(ig.iter_media())) == 5
        fake_instagram.fail_next(code=4, path="/me/media")
        with pytest.raises(RateLimited):
            list(ig.iter_media())
    assert "access_token=[redacted]" in caplog.text  # paging URLs were logged, sanitized
    for secret in [*fake_instagram.tokens, fake_instagram.client_secret]:
        assert secret not in caplog.text
    assert token not in repr(InstagramClient(token))


def test_the_adapter_names_the_provider():
    assert InstagramLoginOAuth2Adapter.provider_id == InstagramLoginProvider.id == PROVIDER


def answer(status: int, body: str) -> requests.Response:
    resp = requests.Response()
    resp.status_code, resp._content = status, body.encode()
    return resp


@pytest.mark.parametrize("body, expected", [
    ('{"error": {"message": "Invalid OAuth access token", "type": "OAuthException", "code": 190,'
     ' "error_subcode": 463}}', (190, 463, "OAuthException", "Invalid OAuth access token")),
    ('{"error_type": "OAuthException", "code": 400, "error_message": "Invalid code"}',
     (400, None, "OAuthException", "Invalid code")),
    ('{"error": "access_denied", "error_description": "The user denied"}',
     (None, None, "access_denied", "The user denied")),
    ("<html>Bad gateway</html>", (None, None, "", "<html>Bad gateway</html>")),
    ("[1, 2]", (None, None, "", "")),
])
def test_every_error_shape_reads_the_same(body, expected):
    error = error_of(answer(400, body))
    assert (error.code, error.subcode, error.kind, error.message) == expected
    assert error.status == 400 and str(error)


def test_error_descriptions_never_carry_tokens():
    error = error_of(answer(400, '{"error_message": "bad access_token=IGQVJsecret123", "code": 100}'))
    assert "IGQVJsecret123" not in str(error) and "access_token=[redacted]" in str(error)


def test_ids_keep_all_their_digits():
    data = json_object(answer(200, '{"id": 27182818284590452, "user_id": 17841405822304914}'))
    assert data == {"id": "27182818284590452", "user_id": "17841405822304914"}
    assert json_object(answer(200, "not json")) is None and json_object(answer(200, "[]")) is None
