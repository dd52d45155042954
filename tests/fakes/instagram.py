"""A loopback Instagram: Business Login, the Graph API media edges and a signed CDN.

One threaded ``http.server`` on 127.0.0.1 plays ``www.instagram.com`` (the
authorization dialog), ``api.instagram.com`` (code exchange) and
``graph.instagram.com`` (tokens, ``/me``, ``/me/media``, ``/{media-id}``) plus a
CDN serving real fixture photos under signed, expiring URLs. Its state is plain
Python that tests read and change:

    fake.add_post("IMAGE", ["people/barack_obama/1.jpg"], caption="hi")
    fake.add_post("CAROUSEL_ALBUM", [...three photos...])
    fake.add_post("VIDEO", ["people/kit_harington/1.jpg"])   # the cover image
    fake.add_post("IMAGE", [...], copyright_flagged=True)      # no media_url
    fake.fail_next(2, status=429)                              # or code=4/17/32/613/190
    fake.app_usage = {"call_count": 100, "total_time": 10, "total_cputime": 10}
    fake.revoke_token()                                        # every token -> code 190
    fake.expire_media_urls()                                   # CDN answers 403
    fake.media_url_ttl = 1.0                                   # URLs expire a second after listing
    fake.clock = lambda: now[0]                                # ...on a clock the test moves
    fake.cdn_delay, fake.graph_delay = 0.15, 0.1               # seconds before each answer
    fake.keep_alive, fake.connect_delay = True, 0.15           # HTTP/1.1; a new connection's handshake
    fake.rate_limit_every(3, code=613)                         # every 3rd Graph call refused
    fake.slow_cdn(media_id, "hang", seconds=30)                # or "trickle": a few bytes at a time
    fake.fail_next(3, status=500, path=f"/cdn/{media_id}")     # the CDN fails that photo thrice
    fake.requests                                              # every request seen (and its status)

Shapes follow Meta's documentation for the Instagram API with Instagram Login:
the code exchange answers flat JSON with ``user_id`` as a bare 17-digit number,
token-endpoint errors are flat (``error_type``, ``code``, ``error_message``) and
Graph errors nest under ``error``; paging ``next`` links are absolute and repeat
the access token, like the real ones.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import html
import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests

from tests.conftest import FIXTURES

LONG_LIVED_SECONDS = 5_183_944  # what Instagram answers: a little under 60 days
SHORT_LIVED_SECONDS = 3600
EXPIRED_TEXT = b"URL signature expired"
CONTENT_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".heic": "image/heic",
                 ".webp": "image/webp", ".mp4": "video/mp4"}
# A few bytes of an MP4 header: what a video's media_url serves (not an image).
FAKE_MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64


@dataclass
class FakeToken:
    kind: str  # "short" | "long"
    issued_at: float
    expires_at: float
    revoked: bool = False


@dataclass
class FakeMedia:
    id: str
    media_type: str  # IMAGE | VIDEO | CAROUSEL_ALBUM
    timestamp: dt.datetime
    caption: str = ""
    photo: Path | None = None  # the image (a video's cover)
    video: bytes | None = None  # a video's MP4 (default: a short clip of its cover photo)
    children: list[FakeMedia] = field(default_factory=list)
    copyright_flagged: bool = False

    @property
    def permalink(self) -> str:
        return f"https://www.instagram.com/p/{base64.urlsafe_b64encode(self.id.encode()).decode()[:11]}/"


@dataclass
class Failure:
    remaining: int
    status: int
    code: int | None
    message: str
    kind: str
    path: str | None
    headers: dict[str, str]


@dataclass
class SeenRequest:
    method: str
    path: str  # without the /vNN.N prefix
    query: dict[str, str]
    form: dict[str, str]
    raw: str  # the request target as sent (includes the token)
    status: int = 0  # the status answered (0 until answered)
    port: int = 0  # the client's port: one per connection


class FakeInstagram:
    def __init__(self, photos_dir: Path = FIXTURES, *, client_id: str = "990602627938098",
                 client_secret: str = "fake-instagram-app-secret", page_size: int = 25):
        self.photos_dir = Path(photos_dir)
        self.client_id = client_id
        self.client_secret = client_secret
        self.max_page_size = page_size
        # The account that logs in: 17-digit ids beyond float precision on purpose.
        self.app_user_id = "27182818284590452"  # code exchange "user_id" == /me "id"
        self.ig_user_id = "17841405822304914"  # /me "user_id" (professional account id)
        self.username = "alice.faces"
        self.media: list[FakeMedia] = []
        self.tokens: dict[str, FakeToken] = {}
        self.codes: dict[str, dict[str, str]] = {}
        self.pending: dict[str, dict[str, str]] = {}
        self.requests: list[SeenRequest] = []
        self.failures: list[Failure] = []
        self.app_usage: dict[str, Any] | None = None
        self.buc_usage: dict[str, Any] | None = None
        self.media_url_ttl = 3600.0
        # The CDN's clock for signed URLs; a test may replace it to age URLs without waiting.
        self.clock: Callable[[], float] = time.time
        # Simulated network time (seconds) before each CDN and each API answer.
        self.cdn_delay = 0.0
        self.graph_delay = 0.0
        # Connections stay open between requests (HTTP/1.1) when ``keep_alive``, as
        # Instagram's do; the first request on each new one waits ``connect_delay``
        # more (the TCP and TLS handshakes' round trips); ``SeenRequest.port`` names each.
        self.keep_alive = False
        self.connect_delay = 0.0
        self._open: set[socket.socket] = set()  # live connections, closed by stop()
        # Every ``n``th API call (``path`` prefix, None = any Graph call) is refused.
        self.rate_limit: Failure | None = None
        self.rate_limit_period = 0
        self.api_calls = 0
        self.slow_media: dict[str, tuple[str, float]] = {}  # media id -> (mode, seconds)
        self.released = threading.Event()  # ends every "hold" at once
        self.url_generation = 0
        self._next_id = 17_900_000_000_000_001
        self._signing_key = secrets.token_bytes(16)
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle ---------------------------------------------------------------

    def start(self) -> FakeInstagram:
        fake = self

        class Handler(_Handler):
            pass

        Handler.fake = fake
        Handler.protocol_version = "HTTP/1.1" if self.keep_alive else "HTTP/1.0"
        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-instagram", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        # A server that goes away closes its kept-alive connections too: a pooled
        # client then reconnects instead of talking to this stopped fake.
        with self._lock:
            for connection in self._open:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._open.clear()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def env(self) -> dict[str, str]:
        """Environment for a worker process that should use this fake."""
        return {
            "INSTAGRAM_AUTH_URL": self.url,
            "INSTAGRAM_API_URL": self.url,
            "INSTAGRAM_GRAPH_URL": self.url,
            "INSTAGRAM_CLIENT_ID": self.client_id,
            "INSTAGRAM_CLIENT_SECRET": self.client_secret,
        }

    # Test controls -------------------------------------------------------------

    def _new_id(self) -> str:
        with self._lock:
            self._next_id += 1
            return str(self._next_id)

    def _photo(self, photo: str | Path) -> Path:
        path = Path(photo)
        path = path if path.is_absolute() else self.photos_dir / path
        assert path.is_file(), f"no fixture photo at {path}"
        return path

    def add_post(self, media_type: str = "IMAGE", photos: list[str | Path] | None = None, *,
                 caption: str = "", timestamp: dt.datetime | None = None,
                 copyright_flagged: bool = False, media_id: str | None = None,
                 video: bytes | None = None, child_videos: dict[int, bytes] | None = None) -> str:
        """Publish a media; returns its id. Newer posts list first, as on Instagram.

        IMAGE and VIDEO take one photo (a video's is its cover; ``video`` its
        MP4); a carousel takes one per child, and ``child_videos`` makes the
        children at those positions videos (the photo is then their cover).
        ``timestamp`` defaults to one minute after the newest post.
        """
        child_videos = child_videos or {}
        photos = photos or ["people/barack_obama/1.jpg"]
        with self._lock:
            if timestamp is None:
                start = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
                newest = max((m.timestamp for m in self.media), default=start)
                timestamp = newest + dt.timedelta(minutes=1)
            media = FakeMedia(id=media_id or self._new_id(), media_type=media_type, timestamp=timestamp,
                              caption=caption, copyright_flagged=copyright_flagged)
            if media_type == "CAROUSEL_ALBUM":
                for position, photo in enumerate(photos):
                    media.children.append(FakeMedia(
                        id=self._new_id(), media_type="VIDEO" if position in child_videos else "IMAGE",
                        timestamp=timestamp, photo=self._photo(photo), video=child_videos.get(position)))
            else:
                media.photo = self._photo(photos[0])
                media.video = video
            self.media.append(media)
            self.media.sort(key=lambda m: m.timestamp, reverse=True)
            return media.id

    def add_sample_library(self) -> dict[str, str]:
        """Four posts covering each shape: image, carousel, video, copyright-flagged."""
        return {
            "image": self.add_post("IMAGE", ["people/barack_obama/1.jpg"], caption="Obama"),
            "carousel": self.add_post(
                "CAROUSEL_ALBUM",
                ["people/kit_harington/1.jpg", "groups/two_people.jpg", "noface/dogs.jpg"],
                caption="Carousel",
            ),
            "video": self.add_post("VIDEO", ["people/john_salley/1.jpg"], caption="A video"),
            "flagged": self.add_post("IMAGE", ["people/barack_obama/2.jpg"], copyright_flagged=True),
        }

    def delete_post(self, media_id: str) -> None:
        with self._lock:
            self.media = [m for m in self.media if m.id != media_id]

    def fail_next(self, n: int = 1, *, status: int | None = None, code: int | None = None,
                  message: str | None = None, kind: str = "OAuthException", path: str | None = None,
                  headers: dict[str, str] | None = None) -> None:
        """The next ``n`` API requests (matching ``path`` prefix, e.g. "/me/media") fail.

        ``status=429`` alone is a bare HTTP 429; ``code`` gives a Graph error body
        (HTTP 400 unless ``status`` says otherwise). CDN and the authorization
        dialog are only affected when ``path`` names them ("/cdn", "/oauth/authorize").
        """
        with self._lock:
            self.failures.append(Failure(
                remaining=n, status=status or (400 if code is not None else 429), code=code,
                message=message or ("Application request limit reached" if code in (4, 17, 32, 613)
                                    else "Error validating access token" if code == 190
                                    else "Too Many Requests"),
                kind=kind, path=path, headers=headers or {},
            ))

    def rate_limit_every(self, n: int, *, status: int | None = None, code: int | None = None,
                         path: str | None = None, retry_after: float | None = 1.0) -> None:
        """Refuse every ``n``th API call (counting from now) like a rate limit.

        ``code`` gives a Graph error body (4, 17, 32 or 613; HTTP 400), ``status``
        alone a bare HTTP 429; ``retry_after`` (seconds) is sent as Retry-After.
        ``n=0`` turns it off.
        """
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        with self._lock:
            self.api_calls = 0
            self.rate_limit_period = n
            self.rate_limit = Failure(
                remaining=0, status=status or (400 if code is not None else 429), code=code,
                message="Application request limit reached" if code is not None else "Too Many Requests",
                kind="OAuthException", path=path, headers=headers,
            ) if n else None

    def slow_cdn(self, media_id: str, mode: str = "hang", *, seconds: float = 30.0) -> None:
        """The CDN sends this media's headers, then ``hang``s (nothing for ``seconds``),
        ``trickle``s its bytes (16 bytes per ``seconds / 10``) or ``hold``s them
        until ``release_cdn()`` (at most ``seconds``)."""
        assert mode in ("hang", "trickle", "hold"), mode
        with self._lock:
            self.slow_media[media_id] = (mode, seconds)

    def release_cdn(self) -> None:
        """Let every held CDN answer go (see ``slow_cdn``)."""
        self.released.set()

    def listed_pages(self) -> list[str]:
        """The ``after`` cursor of every media page answered with 200 ("" = the first page).

        Only the crawl's listing (with ``media_url``) counts: the ids-only
        listing that notices deleted posts is another listing.
        """
        return [r.query.get("after", "") for r in self.requests
                if r.path.endswith("/media") and r.status == 200 and "media_url" in r.query.get("fields", "")]

    def revoke_token(self, token: str | None = None) -> None:
        """The user removed the app (or the token expired): Graph answers code 190."""
        with self._lock:
            for value, info in self.tokens.items():
                if token is None or value == token:
                    info.revoked = True

    def issue_token(self, kind: str = "long", *, expires_in: float | None = None, age: float = 0) -> str:
        """A valid token without the OAuth dance (for client tests).

        ``age`` backdates its issue; ``expires_in`` is its remaining life from
        now (default: a full life from its issue).
        """
        now = time.time()
        issued = now - age
        if expires_in is not None:
            expires_at = now + expires_in
        else:
            expires_at = issued + (LONG_LIVED_SECONDS if kind == "long" else SHORT_LIVED_SECONDS)
        token = ("IGAA" if kind == "long" else "IGQ") + secrets.token_urlsafe(24)
        with self._lock:
            self.tokens[token] = FakeToken(kind=kind, issued_at=issued, expires_at=expires_at)
        return token

    def expire_media_urls(self) -> None:
        """Every media URL issued so far stops working (403 "URL signature expired")."""
        with self._lock:
            self.url_generation += 1

    def requests_to(self, path: str) -> list[SeenRequest]:
        return [r for r in self.requests if r.path == path or r.path.startswith(path.rstrip("/") + "/")]

    def find(self, media_id: str) -> FakeMedia | None:
        for media in self.media:
            if media.id == media_id:
                return media
            for child in media.children:
                if child.id == media_id:
                    return child
        return None

    # The user's side of the dialog ---------------------------------------------------

    def authorize(self, authorize_url: str, *, allow: bool = True) -> str:
        """Open the dialog like a browser and press Allow (or Cancel); returns the redirect."""
        page = requests.get(authorize_url, timeout=10)
        assert page.status_code == 200, page.text
        button = "allow" if allow else "deny"
        match = re.search(rf'id="{button}" href="([^"]+)"', page.text)
        assert match, page.text
        answer = requests.get(self.url + html.unescape(match.group(1)), allow_redirects=False, timeout=10)
        assert answer.status_code == 302, answer.text
        return answer.headers["Location"]

    # Helpers used by the handler -----------------------------------------------------

    def sign(self, media: FakeMedia, ext: str) -> str:
        expires = int(self.clock() + self.media_url_ttl)
        payload = f"{media.id}{ext}:{self.url_generation}:{expires}".encode()
        sig = hmac.new(self._signing_key, payload, hashlib.sha256).hexdigest()[:32]
        return f"{self.url}/cdn/{media.id}{ext}?" + urlencode(
            {"_nc_gen": self.url_generation, "oe": format(expires, "x"), "oh": sig})

    def signature_ok(self, name: str, query: dict[str, str]) -> bool:
        try:
            gen, expires = int(query["_nc_gen"]), int(query["oe"], 16)
        except (KeyError, ValueError):
            return False
        payload = f"{name}:{gen}:{expires}".encode()
        good = hmac.new(self._signing_key, payload, hashlib.sha256).hexdigest()[:32]
        return (hmac.compare_digest(good, query.get("oh", "")) and gen == self.url_generation
                and expires >= self.clock())

    def media_json(self, media: FakeMedia, fields: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, sub in fields.items():
            if name == "id":
                out["id"] = media.id
            elif name == "media_type":
                out["media_type"] = media.media_type
            elif name == "media_url" and not media.copyright_flagged:
                if media.media_type == "VIDEO":
                    out["media_url"] = self.sign(media, ".mp4")
                elif media.media_type == "CAROUSEL_ALBUM" and media.children:
                    out["media_url"] = self.sign(media.children[0], media.children[0].photo.suffix.lower())
                elif media.photo:
                    out["media_url"] = self.sign(media, media.photo.suffix.lower())
            elif name == "thumbnail_url" and media.media_type == "VIDEO" and not media.copyright_flagged:
                out["thumbnail_url"] = self.sign(media, media.photo.suffix.lower())
            elif name == "permalink":
                out["permalink"] = media.permalink
            elif name == "timestamp":
                out["timestamp"] = media.timestamp.strftime("%Y-%m-%dT%H:%M:%S+0000")
            elif name == "caption" and media.caption:
                out["caption"] = media.caption
            elif name == "children" and media.children:
                out["children"] = {"data": [self.media_json(c, sub or {"id": None}) for c in media.children]}
        return out


def parse_fields(text: str) -> dict[str, Any]:
    """``id,children{id,media_url}`` -> ``{"id": None, "children": {"id": None, "media_url": None}}``."""
    return _parse_fields(text or "id", 0)[0]


def _parse_fields(text: str, i: int) -> tuple[dict[str, Any], int]:
    out: dict[str, Any] = {}
    name = ""
    while i < len(text):
        ch = text[i]
        if ch == "{":
            out[name.strip()], i = _parse_fields(text, i + 1)
            name = ""
        elif ch in ",}":
            if name.strip():
                out.setdefault(name.strip(), None)
            name = ""
            if ch == "}":
                return out, i
        else:
            name += ch
        i += 1
    if name.strip():
        out.setdefault(name.strip(), None)
    return out, i


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The listen backlog, read when the socket starts listening: many downloads
    # connect at once, and the default of 5 would drop some connection attempts.
    request_queue_size = 256


class _Handler(BaseHTTPRequestHandler):
    fake: FakeInstagram
    seen: SeenRequest | None = None
    server_version = "FakeInstagram/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # keep tokens off stderr
        pass

    def setup(self) -> None:
        super().setup()
        with self.fake._lock:
            self.fake._open.add(self.connection)
        self.handshake = self.fake.connect_delay  # paid by this connection's first request

    def finish(self) -> None:
        with self.fake._lock:
            self.fake._open.discard(self.connection)
        super().finish()

    # Plumbing -------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _send(self, status: int, body: bytes | str | dict, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        if isinstance(body, dict):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        if getattr(self, "seen", None) is not None:
            self.seen.status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _graph_error(self, status: int, code: int | None, message: str, kind: str = "OAuthException",
                     subcode: int | None = None, headers: dict[str, str] | None = None) -> None:
        error: dict[str, Any] = {"message": message, "type": kind, "fbtrace_id": secrets.token_urlsafe(8)}
        if code is not None:
            error["code"] = code
        if subcode is not None:
            error["error_subcode"] = subcode
        self._send(status, {"error": error}, headers={**self._usage_headers(), **(headers or {})})

    def _usage_headers(self) -> dict[str, str]:
        fake, headers = self.fake, {}
        if fake.app_usage is not None:
            headers["X-App-Usage"] = json.dumps(fake.app_usage)
        if fake.buc_usage is not None:
            headers["X-Business-Use-Case-Usage"] = json.dumps(
                {fake.ig_user_id: [{"type": "instagram", **fake.buc_usage}]})
        return headers

    def _dispatch(self, method: str) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        path = re.sub(r"^/v\d+\.\d+(?=/)", "", parts.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        form: dict[str, str] = {}
        if method == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            form = dict(parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True))
        is_api = not path.startswith(("/cdn", "/oauth/authorize"))
        delay = fake.graph_delay if is_api else fake.cdn_delay if path.startswith("/cdn") else 0.0
        delay, self.handshake = delay + self.handshake, 0.0
        if delay:
            time.sleep(delay)
        self.seen = SeenRequest(method, path, query, form, self.path, port=self.client_address[1])
        with fake._lock:
            fake.requests.append(self.seen)
            failure = self._take_failure(path)
            if failure is None and is_api and fake.rate_limit is not None:
                limit = fake.rate_limit
                if limit.path is None or path.startswith(limit.path):
                    fake.api_calls += 1
                    if fake.api_calls % fake.rate_limit_period == 0:
                        failure = limit
        if failure is not None:
            if failure.code is None:
                self._send(failure.status, failure.message, "text/plain",
                           headers={**self._usage_headers(), **failure.headers})
            else:
                self._graph_error(failure.status, failure.code, failure.message, failure.kind,
                                  headers=failure.headers)
            return
        try:
            self._route(method, path, query, form)
        except Exception as exc:  # a bug in the fake should fail loudly, not hang
            self._send(500, {"error": {"message": f"fake crashed: {exc!r}", "type": "FakeError", "code": 1}})
            raise

    def _take_failure(self, path: str) -> Failure | None:
        for failure in self.fake.failures:
            if failure.path is None:
                applies = not path.startswith(("/cdn", "/oauth/authorize"))
            else:
                applies = path.startswith(failure.path)
            if applies and failure.remaining > 0:
                failure.remaining -= 1
                if failure.remaining == 0:
                    self.fake.failures.remove(failure)
                return failure
        return None

    def _route(self, method: str, path: str, query: dict[str, str], form: dict[str, str]) -> None:
        fake = self.fake
        if path == "/oauth/authorize" and method == "GET":
            return self._authorize_page(query)
        if path == "/oauth/authorize/allow":
            return self._authorize_answer(query, allow=True)
        if path == "/oauth/authorize/deny":
            return self._authorize_answer(query, allow=False)
        if path == "/oauth/access_token" and method == "POST":
            return self._exchange_code(form)
        if path.startswith("/cdn/"):
            return self._cdn(path[len("/cdn/"):], query)
        if method != "GET":
            return self._graph_error(400, 100, "Unsupported request method")
        token = self._token(query)
        if path == "/access_token":
            return self._long_lived(query, token)
        if token is None:
            return None  # _token answered the error
        if path == "/refresh_access_token":
            return self._refresh(query, token)
        if path == "/me":
            fields = parse_fields(query.get("fields", "id"))
            me = {"id": fake.app_user_id, "user_id": fake.ig_user_id, "username": fake.username,
                  "account_type": "BUSINESS"}
            out = {k: me[k] for k in fields if k in me}
            out.setdefault("id", fake.app_user_id)
            return self._send(200, out, headers=self._usage_headers())
        if path in ("/me/media", f"/{fake.ig_user_id}/media"):
            return self._media_page(query)
        match = re.fullmatch(r"/(\d+)", path)
        if match:
            media = fake.find(match.group(1))
            if media is None:
                return self._graph_error(
                    400, 100, f"Unsupported get request. Object with ID '{match.group(1)}' does not exist",
                    "IGApiException", subcode=33)
            fields = parse_fields(query.get("fields", "id"))
            body = fake.media_json(media, fields)
            body.setdefault("id", media.id)
            return self._send(200, body, headers=self._usage_headers())
        return self._graph_error(400, 100, f"Unknown path components: {path}", "IGApiException")

    def _token(self, query: dict[str, str]) -> str | None:
        """The request's valid token, or None after answering a Graph 190 error."""
        value = query.get("access_token", "")
        info = self.fake.tokens.get(value)
        if not value:
            self._graph_error(400, 2500, "An active access token must be used to query information.")
            return None
        if info is None:
            self._graph_error(400, 190, "Invalid OAuth access token - Cannot parse access token")
            return None
        if info.revoked:
            message = "Error validating access token: The user has not authorized application."
            self._graph_error(400, 190, message, subcode=458)
            return None
        if info.expires_at < time.time():
            self._graph_error(400, 190, "Error validating access token: Session has expired.", subcode=463)
            return None
        return value

    # OAuth ------------------------------------------------------------------------

    def _authorize_page(self, query: dict[str, str]) -> None:
        fake = self.fake
        problems = []
        if query.get("client_id") != fake.client_id:
            problems.append("Invalid platform app")
        if query.get("response_type") != "code":
            problems.append("response_type must be code")
        if "instagram_business_basic" not in re.split(r"[,\s]+", query.get("scope", "")):
            problems.append("Invalid scope: instagram_business_basic is required")
        if not query.get("redirect_uri", "").startswith(("http://", "https://")):
            problems.append("Invalid redirect_uri")
        if problems:
            page = "<h1>Error</h1><p>" + html.escape("; ".join(problems)) + "</p>"
            return self._send(400, page, "text/html")
        request_id = secrets.token_urlsafe(12)
        with fake._lock:
            fake.pending[request_id] = {k: query.get(k, "") for k in ("redirect_uri", "state", "scope")}
        allow = html.escape(f"/oauth/authorize/allow?{urlencode({'request': request_id})}")
        deny = html.escape(f"/oauth/authorize/deny?{urlencode({'request': request_id})}")
        page = (
            "<!doctype html><title>Instagram</title>"
            f"<h1>Allow Faces to access {html.escape(fake.username)}'s profile and media?</h1>"
            f'<a id="allow" href="{allow}">Allow</a> <a id="deny" href="{deny}">Cancel</a>'
        )
        self._send(200, page, "text/html; charset=utf-8")

    def _authorize_answer(self, query: dict[str, str], *, allow: bool) -> None:
        fake = self.fake
        with fake._lock:
            pending = fake.pending.pop(query.get("request", ""), None)
        if pending is None:
            return self._send(400, "<h1>This page isn't available</h1>", "text/html")
        state = {"state": pending["state"]} if pending["state"] else {}
        if allow:
            code = "AQ" + secrets.token_urlsafe(32)
            with fake._lock:
                fake.codes[code] = {"redirect_uri": pending["redirect_uri"]}
            params = {"code": code, **state}
        else:
            params = {"error": "access_denied", "error_reason": "user_denied",
                      "error_description": "The user denied your request.", **state}
        sep = "&" if "?" in pending["redirect_uri"] else "?"
        # Instagram appends "#_" to the redirect; browsers keep fragments client-side.
        location = f"{pending['redirect_uri']}{sep}{urlencode(params)}#_"
        self._send(302, b"", "text/html", headers={"Location": location})

    def _flat_error(self, message: str, code: int = 400) -> None:
        self._send(400, {"error_type": "OAuthException", "code": code, "error_message": message})

    def _exchange_code(self, form: dict[str, str]) -> None:
        fake = self.fake
        if form.get("client_id") != fake.client_id:
            return self._flat_error("Invalid platform app")
        if form.get("client_secret") != fake.client_secret:
            return self._flat_error("Error validating client secret.", 101)
        if form.get("grant_type") != "authorization_code":
            return self._flat_error("Unsupported grant_type")
        with fake._lock:
            code = fake.codes.pop(form.get("code", ""), None)
        if code is None:
            return self._flat_error("This authorization code has been used.")
        if code["redirect_uri"] != form.get("redirect_uri"):
            return self._flat_error(
                "Error validating verification code. Please make sure your redirect_uri is "
                "identical to the one you used in the OAuth dialog request"
            )
        token = fake.issue_token("short")
        # user_id as a bare JSON number of 17 digits: a float would lose the last ones.
        body = ('{"access_token": "%s", "user_id": %s, "permissions": ["instagram_business_basic"]}'
                % (token, fake.app_user_id))
        self._send(200, body)

    def _long_lived(self, query: dict[str, str], token: str | None) -> None:
        fake = self.fake
        if token is None:
            return None
        if query.get("grant_type") != "ig_exchange_token":
            return self._graph_error(400, 100, "Unsupported grant type")
        if query.get("client_secret") != fake.client_secret:
            return self._graph_error(400, 101, "Error validating client secret.")
        if fake.tokens[token].kind != "short":
            return self._graph_error(400, 100, "Only short-lived tokens can be exchanged")
        long_token = fake.issue_token("long")
        body = {"access_token": long_token, "token_type": "bearer", "expires_in": LONG_LIVED_SECONDS}
        self._send(200, body, headers=self._usage_headers())

    def _refresh(self, query: dict[str, str], token: str) -> None:
        fake = self.fake
        if query.get("grant_type") != "ig_refresh_token":
            return self._graph_error(400, 100, "Unsupported grant type")
        if fake.tokens[token].kind != "long":
            return self._graph_error(400, 190, "Only long-lived tokens can be refreshed")
        new = fake.issue_token("long", expires_in=5_184_000)
        self._send(200, {"access_token": new, "token_type": "bearer", "expires_in": 5_184_000},
                   headers=self._usage_headers())

    # Graph media -------------------------------------------------------------------

    def _media_page(self, query: dict[str, str]) -> None:
        fake = self.fake
        fields = parse_fields(query.get("fields", "id"))
        try:
            limit = max(1, min(int(query.get("limit", "25")), fake.max_page_size))
        except ValueError:
            return self._graph_error(400, 100, "Invalid limit")
        offset = 0
        if query.get("after"):
            try:
                offset = int(base64.urlsafe_b64decode(query["after"].encode()).decode().split(":")[1])
            except (ValueError, IndexError):
                return self._graph_error(400, 100, "Invalid cursor")
        with fake._lock:
            page = fake.media[offset:offset + limit]
            body: dict[str, Any] = {"data": [fake.media_json(m, fields) for m in page]}
            total = len(fake.media)
        cursor = lambda n: base64.urlsafe_b64encode(f"offset:{n}".encode()).decode()  # noqa: E731
        paging: dict[str, Any] = {"cursors": {"before": cursor(offset), "after": cursor(offset + len(page))}}
        if offset + len(page) < total:
            params = {"access_token": query["access_token"], "fields": query.get("fields", "id"),
                      "limit": str(limit), "after": cursor(offset + len(page))}
            paging["next"] = f"{fake.url}/v21.0/{fake.ig_user_id}/media?{urlencode(params)}"
        if offset:
            paging["previous"] = f"{fake.url}/v21.0/{fake.ig_user_id}/media?before={cursor(offset)}"
        body["paging"] = paging
        self._send(200, body, headers=self._usage_headers())

    def _cdn(self, name: str, query: dict[str, str]) -> None:
        fake = self.fake
        if not fake.signature_ok(name, query):
            return self._send(403, EXPIRED_TEXT, "text/plain")
        media = fake.find(name.split(".")[0])
        if media is None:
            return self._send(404, b"Not found", "text/plain")
        if name.endswith(".mp4"):
            return self._send(200, media.video or cover_clip(media.photo), "video/mp4")
        data = media.photo.read_bytes()
        content_type = CONTENT_TYPES.get(media.photo.suffix.lower(), "application/octet-stream")
        slow = fake.slow_media.get(media.id)
        if slow is None:
            return self._send(200, data, content_type)
        mode, seconds = slow
        self.seen.status = 200
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            if mode in ("hang", "hold"):
                if mode == "hold":
                    fake.released.wait(seconds)
                else:
                    time.sleep(seconds)
                self.wfile.write(data)
            else:
                for start in range(0, len(data), 16):
                    self.wfile.write(data[start:start + 16])
                    self.wfile.flush()
                    time.sleep(seconds / 10)
        except OSError:  # the client gave up: what a trickling CDN sees
            pass


_CLIPS: dict[Path, bytes] = {}


def cover_clip(photo: Path) -> bytes:
    """A 2-s MP4 showing ``photo``: what a video whose test gave no MP4 plays (made once)."""
    if photo not in _CLIPS:
        from tests.videos import Appearance, Clip, render

        _CLIPS[photo] = render(Clip(2, [Appearance(photo, 0, 2)], fps=5))
    return _CLIPS[photo]


@pytest.fixture
def fake_instagram(settings) -> Iterator[FakeInstagram]:
    """A running fake Instagram; settings point Faces at it with a test app id/secret."""
    fake = FakeInstagram(FIXTURES).start()
    settings.INSTAGRAM_AUTH_URL = fake.url
    settings.INSTAGRAM_API_URL = fake.url
    settings.INSTAGRAM_GRAPH_URL = fake.url
    providers = dict(settings.SOCIALACCOUNT_PROVIDERS)
    providers["instagram_login"] = {
        **providers.get("instagram_login", {}),
        "APPS": [{"client_id": fake.client_id, "secret": fake.client_secret}],
        "SCOPE": ["instagram_business_basic"],
    }
    settings.SOCIALACCOUNT_PROVIDERS = providers
    try:
        yield fake
    finally:
        fake.stop()


def connect_instagram(user, fake: FakeInstagram, *, expires_in: float | None = None, age: float = 0,
                      uid: str | None = None):
    """Link ``user`` to the fake's account without the OAuth dance: (SocialAccount, SocialToken).

    ``age`` (seconds) backdates the token, ``expires_in`` sets its remaining
    life; a second user needs another ``uid`` (uids are unique per provider).
    """
    from allauth.socialaccount.models import SocialAccount, SocialToken
    from django.utils import timezone

    token = fake.issue_token("long", expires_in=expires_in, age=age)
    lifetime = fake.tokens[token].expires_at - time.time()
    issued = timezone.now() - dt.timedelta(seconds=age)
    account = SocialAccount.objects.create(
        user=user, provider="instagram_login", uid=uid or fake.app_user_id,
        extra_data={"id": uid or fake.app_user_id, "user_id": fake.ig_user_id, "username": fake.username,
                    "token_issued_at": issued.isoformat()},
    )
    social_token = SocialToken.objects.create(
        account=account, token=token, expires_at=timezone.now() + dt.timedelta(seconds=lifetime))
    return account, social_token
