"""OAuth2 views for Business Login for Instagram.

A login takes three calls: the code exchange (``INSTAGRAM_API_URL``, flat
errors), the exchange of the one-hour token for a 60-day one and the profile
(both ``INSTAGRAM_GRAPH_URL``, errors nested under ``error``). Base URLs are read
from settings on every request so tests can point them at a loopback fake.
"""

from __future__ import annotations

import logging
from typing import Any

import requests
from allauth.socialaccount.adapter import get_adapter
from allauth.socialaccount.providers.oauth2.client import OAuth2Client, OAuth2Error
from allauth.socialaccount.providers.oauth2.views import (
    OAuth2Adapter,
    OAuth2CallbackView,
    OAuth2LoginView,
)
from django.http import HttpRequest
from django.utils import timezone

from .graph import base_url, error_of, json_object

logger = logging.getLogger(__name__)


def read_json(resp: requests.Response, doing: str) -> dict:
    """The JSON object of a successful answer, or OAuth2Error saying what failed."""
    if resp.status_code != 200:
        message = f"Instagram refused to {doing} ({error_of(resp)})."
        logger.warning("%s", message)
        raise OAuth2Error(message)
    data = json_object(resp)
    if data is None:
        raise OAuth2Error(f"Instagram sent an unreadable answer when asked to {doing}.")
    return data


def _permissions(value: Any) -> list[str]:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list):
        return [str(item) for item in value]
    return []


class InstagramLoginClient(OAuth2Client):
    """Exchanges the code, then trades the one-hour token for a 60-day one."""

    def get_access_token(self, code, pkce_code_verifier=None, extra_data=None) -> dict:
        form = {
            "client_id": self.consumer_key,
            "client_secret": self.consumer_secret,
            "grant_type": "authorization_code",
            "redirect_uri": self.callback_url,
            "code": code,
        }
        with get_adapter().get_requests_session() as session:
            short = read_json(
                session.post(self.access_token_url, data=form), "exchange the authorization code"
            )
            # The documentation's sample wraps the answer in "data": [...]; the API does not.
            if isinstance(short.get("data"), list) and short["data"]:
                short = short["data"][0]
            if not short.get("access_token") or not short.get("user_id"):
                raise OAuth2Error("Instagram did not return an access token.")
            long_lived = read_json(
                session.get(
                    f"{base_url('INSTAGRAM_GRAPH_URL')}/access_token",
                    params={
                        "grant_type": "ig_exchange_token",
                        "client_secret": self.consumer_secret,
                        "access_token": short["access_token"],
                    },
                ),
                "issue a long-lived token",
            )
        granted = _permissions(short.get("permissions"))
        if granted and "instagram_business_basic" not in granted:
            raise OAuth2Error("Faces needs access to your profile and media (instagram_business_basic).")
        if not long_lived.get("access_token"):
            raise OAuth2Error("Instagram did not return a long-lived access token.")
        return {
            "access_token": long_lived["access_token"],
            "token_type": long_lived.get("token_type", "bearer"),
            "expires_in": int(long_lived["expires_in"]) if long_lived.get("expires_in") else None,
            "user_id": str(short["user_id"]),
            "permissions": granted,
        }


class InstagramLoginOAuth2Adapter(OAuth2Adapter):
    # InstagramLoginProvider.id, spelled out: provider.py imports this module (a test holds them equal).
    provider_id = "instagram_login"
    client_class = InstagramLoginClient
    scope_delimiter = ","

    @property
    def authorize_url(self) -> str:  # type: ignore[override]
        return f"{base_url('INSTAGRAM_AUTH_URL')}/oauth/authorize"

    @property
    def access_token_url(self) -> str:  # type: ignore[override]
        return f"{base_url('INSTAGRAM_API_URL')}/oauth/access_token"

    def complete_login(self, request: HttpRequest, app, token, response=None, **kwargs):
        with get_adapter().get_requests_session() as session:
            me = read_json(
                session.get(
                    f"{base_url('INSTAGRAM_GRAPH_URL')}/me",
                    params={"fields": "user_id,username", "access_token": token.token},
                ),
                "share your profile",
            )
        response = response or {}
        # uid: the app-scoped id of the code exchange (it equals /me's "id");
        # /me's "user_id" is the professional account id, kept for reference.
        uid = str(response.get("user_id") or me.get("id") or "")
        if not uid:
            raise OAuth2Error("Instagram did not say which account logged in.")
        data = {
            "id": uid,
            "user_id": str(me.get("user_id") or ""),
            "username": me.get("username") or "",
            "permissions": response.get("permissions", []),
            # SocialToken has no creation time; a token can be refreshed once a day old.
            "token_issued_at": timezone.now().isoformat(),
        }
        return self.get_provider().sociallogin_from_response(request, data)


oauth2_login = OAuth2LoginView.adapter_view(InstagramLoginOAuth2Adapter)
oauth2_callback = OAuth2CallbackView.adapter_view(InstagramLoginOAuth2Adapter)
