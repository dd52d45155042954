"""Reading the environment that configures ``faces_site.settings``."""

from __future__ import annotations

import os


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


def default_workers() -> int:
    """Queue workers per ``qcluster``: one per core this process may use, plus one, at most 8.

    A worker waits for Instagram's CDN at the start of each index job and for
    the database at each commit; one worker more than cores keeps every core
    busy meanwhile (figures in ``bench/README.md``). Each worker holds the face
    models, so the default stops at 8; big hosts set ``FACES_WORKERS``.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cores + 1, 8)
