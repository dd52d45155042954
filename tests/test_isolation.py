"""Tenant isolation for every URL the project defines, found by walking the URL resolver.

A new view is covered without editing this file: anonymous visitors are sent
to the login page (or get a 404), another user asking for one of Alice's
objects gets the same 404 as for an id that does not exist (never a 403 that
tells the object exists, never data), and every POST needs a CSRF token.

A URL whose id parameter has no factory below fails with its name, so that
whoever adds it says how to make an object of Alice's for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.resolvers import RegexPattern, RoutePattern

from indexing.models import Face, IndexRun, Person, Photo, Source
from tests.conftest import FIXTURES

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
MISSING_ID = 987_654_321


@dataclass(frozen=True)
class Endpoint:
    route: str  # the joined route, e.g. "runs/<int:run_id>/"
    name: str  # namespaced URL name, or the route when unnamed
    params: tuple[tuple[str, str], ...]  # (kwarg, converter class name)
    regex: bool  # a part is a regular expression (admin, allauth): no generic URL building

    @property
    def area(self) -> str:
        if self.route.startswith("admin/"):
            return "admin"
        if self.route.startswith("accounts/"):  # allauth's URLs are included there
            return "allauth"
        return "project"

    def url(self, values: dict[str, object]) -> str:
        if self.regex:
            return SAMPLE_URLS[self.name]
        path = self.route
        for kwarg, _converter in self.params:
            path = re.sub(rf"<(?:\w+:)?{kwarg}>", str(values[kwarg]), path)
        return "/" + path

    def __str__(self) -> str:
        return f"/{self.route} ({self.name})"


def _walk(patterns, prefix: str = "", params: tuple = (), namespace: str = "", regex: bool = False):
    for pattern in patterns:
        here = tuple((k, type(v).__name__) for k, v in getattr(pattern.pattern, "converters", {}).items())
        is_regex = regex or isinstance(pattern.pattern, RegexPattern)
        route = prefix + str(pattern.pattern).lstrip("^").rstrip("$") if is_regex else prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            ns = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from _walk(pattern.url_patterns, route, params + here, ns, is_regex)
        elif isinstance(pattern, URLPattern):
            assert isinstance(pattern.pattern, (RoutePattern, RegexPattern))
            yield Endpoint(
                route=route,
                name=f"{namespace}{pattern.name}" if pattern.name else route,
                params=params + here,
                regex=is_regex,
            )


ENDPOINTS = list(_walk(get_resolver().url_patterns))
PROJECT = [e for e in ENDPOINTS if e.area == "project"]

# Pages a visitor may open without logging in, with the reason.
PUBLIC = {
    "home": "the landing page for visitors; shows no library data",
}
ALLAUTH_PUBLIC = {
    "account_login": "log in",
    "account_logout": "log out (POST; a visitor is just sent on)",
    "account_signup": "sign up",
    "account_inactive": "static notice",
    "account_email_verification_sent": "static notice",
    "account_reset_password": "request a reset link by email",
    "account_reset_password_done": "static notice",
    "account_reset_password_from_key": "reset form, guarded by the emailed key",
    "account_reset_password_from_key_done": "static notice",
    "account_confirm_email": "confirmation, guarded by the emailed key",
    "account_confirm_login_code": "login by code, guarded by the emailed code",
    "socialaccount_login_cancelled": "static notice",
    "socialaccount_login_error": "static notice",
    "socialaccount_signup": "finishes a pending Instagram sign-up kept in the session",
    "accounts/social/login/cancelled/": "redirect to the 3rdparty page",
    "accounts/social/login/error/": "redirect to the 3rdparty page",
    "accounts/social/signup/": "redirect to the 3rdparty page",
    "accounts/social/connections/": "redirect to the 3rdparty page",
    "instagram_login_login": "starts the OAuth dance with Instagram",
    "instagram_login_callback": "OAuth redirect target; guarded by the state in the session",
}
ADMIN_PUBLIC = {
    "admin:login": "staff login",
    "admin:logout": "staff logout",
    "admin:view_on_site": "content-type shortcut; none of our models has a public URL (404)",
}
# Regular-expression routes cannot be filled in generically.
SAMPLE_URLS = {
    "account_confirm_email": "/accounts/confirm-email/not-a-key/",
    "account_reset_password_from_key": "/accounts/password/reset/key/1-not-a-key/",
    "admin:app_list": "/admin/indexing/",
}


@dataclass
class Tenant:
    """Alice's real objects: an indexed upload, an Instagram source, a person, a query."""

    user: object
    client: Client

    @cached_property
    def run(self) -> IndexRun:
        people = FIXTURES / "people"
        call_command(
            "faces_import", "--user", self.user.email, "--sync",
            str(people / "barack_obama" / "1.jpg"), str(people / "joe_biden" / "1.jpg"), stdout=StringIO(),
        )
        run = IndexRun.objects.get(owner=self.user)
        assert run.status == IndexRun.Status.DONE and run.faces_found == 2
        return run

    @cached_property
    def face(self) -> Face:
        self.run  # noqa: B018
        face = Face.objects.filter(owner=self.user).first()
        assert face.thumbnail
        return face

    @cached_property
    def photo(self) -> Photo:
        photo = self.face.photo
        assert photo.original
        return photo

    @cached_property
    def person(self) -> Person:
        person = Person.objects.create(owner=self.user, name="Alice's secret person", cover_face=self.face)
        Face.objects.filter(pk=self.face.pk).update(person=person)
        return person

    @cached_property
    def video_face(self) -> Face:
        """A face of Alice's in a video she uploaded (it has a frame and a stored video)."""
        import tempfile
        from pathlib import Path

        from tests.videos import Appearance, Clip, render

        with tempfile.TemporaryDirectory() as folder:
            clip = Path(folder) / "alice-reel.mp4"
            clip.write_bytes(render(Clip(2, [Appearance(FIXTURES / "people" / "john_simm" / "1.jpg", 0, 2)], fps=5)))
            call_command("faces_import", "--user", self.user.email, "--sync", str(clip), stdout=StringIO())
        face = Face.objects.get(owner=self.user, photo__kind=Photo.Kind.VIDEO)
        assert face.frame and face.photo.video
        return face

    @cached_property
    def instagram_source(self) -> Source:
        return Source.objects.create(owner=self.user, kind=Source.Kind.INSTAGRAM, name="@alice_private")

    @cached_property
    def query_id(self) -> str:
        with (FIXTURES / "people" / "barack_obama" / "2.jpg").open("rb") as image:
            response = self.client.post(reverse("search"), {"image": image})
        assert response.status_code == 302, response
        return response["Location"].strip("/").split("/")[1]

    def markers(self) -> list[str]:
        """Strings that would only appear in a page showing Alice's data."""
        found = [self.user.email]
        if "run" in self.__dict__:
            found += [self.photo.external_id, f"/photos/{self.photo.pk}/image.jpg", f"/faces/{self.face.pk}/thumb.jpg"]
        if "person" in self.__dict__:
            found.append(self.person.name)
        if "instagram_source" in self.__dict__:
            found.append(self.instagram_source.name)
        return found


# How to make one of Alice's objects for each id parameter a URL may take.
ID_FACTORIES = {
    "run_id": lambda alice: alice.run.pk,
    "source_id": lambda alice: alice.instagram_source.pk,
    "post_id": lambda alice: alice.photo.post_id,
    "photo_id": lambda alice: alice.photo.pk,
    "face_id": lambda alice: alice.face.pk,
    "person_id": lambda alice: alice.person.pk,
    "query_id": lambda alice: alice.query_id,
}
# Views of one kind of object only: their ids come from an object of that kind.
ENDPOINT_FACTORIES = {
    "photo_video": {"photo_id": lambda alice: alice.video_face.photo_id},
    "face_frame": {"face_id": lambda alice: alice.video_face.pk},
}
MISSING = {"SlugConverter": "0123456789abcdef0123456789abcdef", "StringConverter": "missing"}


def ids_for(endpoint: Endpoint, alice: Tenant | None, missing: bool = False) -> dict[str, object]:
    values = {}
    for kwarg, converter in endpoint.params:
        if kwarg not in ID_FACTORIES:
            pytest.fail(
                f"{endpoint} takes '{kwarg}', which no id factory in tests/test_isolation.py knows: "
                "add one to ID_FACTORIES that makes an object of Alice's, so the view's isolation is tested."
            )
        factory = ENDPOINT_FACTORIES.get(endpoint.name, {}).get(kwarg, ID_FACTORIES[kwarg])
        values[kwarg] = MISSING.get(converter, MISSING_ID) if missing else factory(alice)
    return values


@pytest.fixture
def alice(user, client) -> Tenant:
    client.force_login(user)
    return Tenant(user=user, client=client)


@pytest.fixture
def bob_client(other_user) -> Client:
    client = Client()
    client.force_login(other_user)
    return client


def is_login_redirect(response) -> bool:
    return response.status_code == 302 and response["Location"].startswith(LOGIN)


def test_the_walk_finds_every_app_url():
    names = {e.name for e in PROJECT}
    assert {"home", "search", "search_results", "query_image", "gallery", "face", "face_thumbnail", "photo_image",
            "run", "run_progress", "run_cancel", "run_retry", "instagram_sync", "privacy", "upload_photos",
            "upload_export", "consent", "consent_withdraw", "delete_account"} <= names
    assert any(e.area == "allauth" for e in ENDPOINTS) and any(e.area == "admin" for e in ENDPOINTS)
    # Every allauth page is either public (with its reason) or tested as login-only below.
    for endpoint in ENDPOINTS:
        if endpoint.regex and endpoint.area != "admin":
            assert endpoint.name in SAMPLE_URLS, f"{endpoint}: add a sample URL to SAMPLE_URLS"


@pytest.mark.parametrize("endpoint", PROJECT, ids=str)
def test_anonymous_visitors_are_sent_to_login(endpoint, alice, user):
    url = endpoint.url(ids_for(endpoint, alice))
    alice.client.logout()
    visitor = Client()
    for method in ("get", "post"):
        response = getattr(visitor, method)(url)
        if endpoint.name in PUBLIC:
            assert response.status_code in (200, 302, 405), f"{method.upper()} {url}: {response.status_code}"
        else:
            assert is_login_redirect(response) or response.status_code == 404, (
                f"{method.upper()} {url} answered {response.status_code} to a visitor"
            )
        body = response.content.decode(errors="replace")
        for marker in alice.markers():
            assert marker not in body, f"{method.upper()} {url} shows {marker!r} to a visitor"


@pytest.mark.parametrize("endpoint", PROJECT, ids=str)
def test_another_user_gets_404_for_alices_objects(endpoint, alice, bob_client):
    if not endpoint.params:
        # No object in the URL: whatever Bob sees must hold none of Alice's data.
        alice.run  # noqa: B018 - Alice has a library, a person and an Instagram source
        alice.person  # noqa: B018
        alice.instagram_source  # noqa: B018
        for method in ("get", "post"):
            response = getattr(bob_client, method)(endpoint.url({}))
            assert response.status_code < 500, f"{method.upper()} {endpoint}: {response.status_code}"
            body = response.content.decode(errors="replace")
            for marker in alice.markers():
                assert marker not in body, f"{method.upper()} {endpoint} shows Bob Alice's {marker!r}"
        return

    url = endpoint.url(ids_for(endpoint, alice))
    missing_url = endpoint.url(ids_for(endpoint, alice, missing=True))
    for method in ("get", "post"):
        for accept in ("text/html", "application/json"):
            response = getattr(bob_client, method)(url, HTTP_ACCEPT=accept)
            absent = getattr(bob_client, method)(missing_url, HTTP_ACCEPT=accept)
            where = f"{method.upper()} {url} (Accept: {accept}) as another user"
            assert response.status_code != 403, f"{where}: 403 tells that the object exists"
            assert response.status_code == absent.status_code, (
                f"{where}: {response.status_code}, but {absent.status_code} for an id that does not exist"
            )
            assert response.status_code in (404, 405), f"{where}: {response.status_code}"
            if method == "post":
                assert response.status_code == 404, f"{where}: {response.status_code}"
            body = response.content.decode(errors="replace")
            for marker in alice.markers():
                assert marker not in body, f"{where} shows {marker!r}"

    # The id factory is right: for Alice herself the same URL is no 404.
    own = alice.client.get(url)
    if own.status_code == 405:
        own = alice.client.post(url)
    assert own.status_code not in (403, 404) and own.status_code < 500, (
        f"{url} answered {own.status_code} to its owner: the id factory made the wrong object"
    )


def _all_urls(alice: Tenant) -> list[tuple[Endpoint, str]]:
    urls = []
    generic = {"IntConverter": 1, "PathConverter": "1", "StringConverter": "x", "SlugConverter": "x"}
    for endpoint in ENDPOINTS:
        if endpoint.area == "project":
            values = ids_for(endpoint, alice)
        else:
            values = {kwarg: generic[converter] for kwarg, converter in endpoint.params}
        if endpoint.regex and endpoint.name not in SAMPLE_URLS:
            continue  # admin's app index is checked through its sample
        urls.append((endpoint, endpoint.url(values)))
    return urls


def test_every_post_needs_a_csrf_token(user):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    alice = Tenant(user=user, client=Client())
    alice.client.force_login(user)
    checked = 0
    for endpoint, url in _all_urls(alice):
        for accept in ("text/html", "application/json"):
            response = strict.post(url, {"x": "1"}, HTTP_ACCEPT=accept)
            assert response.status_code == 403 and b"CSRF" in response.content, (
                f"POST {url} ({endpoint}) without a CSRF token answered {response.status_code}"
            )
        checked += 1
    assert checked > len(PROJECT)


def test_csrf_token_lets_the_form_through(alice):
    """The 403s above come from the CSRF check: with the token the same POST works."""
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice.user)
    strict.get(reverse("privacy"))
    token = strict.cookies["csrftoken"].value
    response = strict.post(reverse("privacy"), {"csrfmiddlewaretoken": token})
    assert response.status_code == 302


@pytest.mark.parametrize(
    "endpoint", [e for e in ENDPOINTS if e.area == "allauth" and e.name not in ALLAUTH_PUBLIC], ids=str
)
def test_allauth_account_pages_need_login(endpoint):
    response = Client().get(endpoint.url({}))
    assert is_login_redirect(response), f"{endpoint}: {response.status_code} for a visitor"


def test_public_allauth_pages_show_no_user_data(alice, settings):
    alice.run  # noqa: B018
    # As deployed with Instagram configured (unconfigured, its login page has nothing to start).
    settings.SOCIALACCOUNT_PROVIDERS = {
        **settings.SOCIALACCOUNT_PROVIDERS,
        "instagram_login": {"APPS": [{"client_id": "isolation-test", "secret": "s"}], "SCOPE": ["instagram_business_basic"]},
    }
    visitor = Client()
    for endpoint in ENDPOINTS:
        if endpoint.area == "allauth" and endpoint.name in ALLAUTH_PUBLIC:
            response = visitor.get(endpoint.url({}))
            assert response.status_code < 500, f"{endpoint}: {response.status_code}"
            for marker in alice.markers():
                assert marker not in response.content.decode(errors="replace"), endpoint


def test_admin_is_for_staff_only(alice, bob_client):
    """Admin pages: visitors and ordinary users go to the admin login, whatever the page."""
    photo = alice.photo
    for endpoint, url in _all_urls(alice):
        if endpoint.area != "admin" or endpoint.name in ADMIN_PUBLIC:
            continue
        for client in (Client(), bob_client):
            response = client.get(url)
            assert response.status_code in (302, 404), f"GET {url}: {response.status_code}"
            if response.status_code == 302:
                assert response["Location"].startswith("/admin/login/"), url
    preview = bob_client.get(reverse("admin:indexing_photo_preview", args=[photo.pk]))
    assert preview.status_code == 302 and preview["Location"].startswith("/admin/login/")
