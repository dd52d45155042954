"""The ``instagram_login`` provider: Instagram professional (Business/Creator) accounts."""

from __future__ import annotations

from allauth.socialaccount.providers.base import ProviderAccount
from allauth.socialaccount.providers.oauth2.provider import OAuth2Provider

from .views import InstagramLoginOAuth2Adapter


class InstagramLoginAccount(ProviderAccount):
    PROFILE_URL = "https://www.instagram.com/"

    def get_profile_url(self) -> str | None:
        username = self.account.extra_data.get("username")
        return f"{self.PROFILE_URL}{username}/" if username else None

    def to_str(self) -> str:
        username = self.account.extra_data.get("username")
        return f"@{username}" if username else super().to_str()


class InstagramLoginProvider(OAuth2Provider):
    id = "instagram_login"
    name = "Instagram"
    account_class = InstagramLoginAccount
    oauth2_adapter_class = InstagramLoginOAuth2Adapter

    def get_default_scope(self) -> list[str]:
        return ["instagram_business_basic"]

    def extract_uid(self, data: dict) -> str:
        # Built by the adapter from the token response: always a str, never a float.
        return str(data["id"])

    def extract_extra_data(self, data: dict) -> dict:
        return data

    def extract_common_fields(self, data: dict) -> dict:
        # Instagram gives no email address: allauth's signup form asks for one.
        return {"username": data.get("username")}


provider_classes = [InstagramLoginProvider]
