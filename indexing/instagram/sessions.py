"""HTTP sessions for talking to Instagram that carry nothing the request did not ask for.

``requests`` adds a login from ``~/.netrc`` (or ``$NETRC``) to any request
whose session has no ``auth`` of its own, and a ``default`` entry there
matches every host; it also keeps whatever cookies the answers set. A worker's
sessions serve every tenant's jobs and reach Instagram's CDN and Graph API
only with signed URLs or a token in the query, so neither is ever wanted.
"""

from __future__ import annotations

import http.cookiejar

import requests


class NoCredentials(requests.auth.AuthBase):
    """A session ``auth`` that adds nothing: with it set, ``requests`` never looks in ``.netrc``."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


def plain_session() -> requests.Session:
    """A ``requests.Session`` that sends no cookies and no credentials it was not given per request.

    Proxy settings from the environment still apply.
    """
    session = requests.Session()
    session.auth = NoCredentials()
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return session
