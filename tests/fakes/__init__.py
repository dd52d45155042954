"""Loopback stand-ins for the services Faces talks to (Instagram, AWS).

Each fake is a real HTTP server on 127.0.0.1 in a thread, so production code
runs unchanged against it with only base URLs overridden. Fixtures live next
to each fake; import them into a test module (or list the module in
``pytest_plugins`` of the root conftest), e.g.
``from tests.fakes.instagram import fake_instagram  # noqa: F401``.
"""
