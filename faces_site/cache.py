"""The file cache of the embedded default, made safe for searches in progress."""

from __future__ import annotations

from django.core.cache.backends.filebased import FileBasedCache


class FileCache(FileBasedCache):
    """Django's file cache, except that a full cache drops expired entries first.

    Django culls a random third of the entries once ``MAX_ENTRIES`` is reached,
    live or expired: the photo of a search someone is looking at, or their
    rate-limit counter, would vanish at random (the load test saw "That search
    has expired" seconds after searching). Here the cull first removes what
    has expired and only falls back to Django's random cull when the cache is
    full of live entries.
    """

    def _cull(self) -> None:
        files = self._list_cache_files()
        if len(files) < self._max_entries:
            return
        for name in files:
            try:
                with open(name, "rb") as handle:
                    self._is_expired(handle)  # deletes the file when expired
            except OSError:  # deleted meanwhile by another process
                pass
        super()._cull()
