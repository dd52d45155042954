"""Parse an export's JSON members only when they fit a memory budget.

A JSON file's size says little about what parsing it costs: one MiB of
``[{},{},…]`` becomes 350,000 Python dicts, about 25 MB, and an export may
hold many such members (twenty of them took a web worker from 126 to 1078 MB).
So before ``json.loads`` sees a member, its cost is estimated from the bytes
themselves (containers and separators counted with strings blanked out, all
in C), and the member is refused when the decoded text plus everything
parsed so far would pass the budget. Nesting deeper than Python's recursion
limit is refused with a message too, instead of a ``RecursionError``.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Python's size of what one JSON token becomes (CPython 3.11, 64-bit): a small
# dict with its hash table, or a list with its slots; a scalar with its
# reference in the parent.
CONTAINER_BYTES = 232
SCALAR_BYTES = 32
TEXT_BYTES_PER_BYTE = 4  # the decoded str, worst case (astral characters)

STRING_BYTES = 64  # a str object's header, on top of its characters
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


class JSONBudgetError(ValueError):
    """The member cannot be parsed within the budget, or is not JSON; the message says why."""


def estimate(data: bytes) -> tuple[int, int]:
    """(bytes the parsed value keeps, bytes parsing needs on top while it runs) for ``data``."""
    bare, strings = _STRING.subn(b'""', data)
    containers = bare.count(b"{") + bare.count(b"[")
    scalars = bare.count(b",") + bare.count(b":") + 1
    kept = CONTAINER_BYTES * containers + SCALAR_BYTES * scalars + STRING_BYTES * strings + len(data)
    return kept, TEXT_BYTES_PER_BYTE * len(data)


class JSONBudget:
    """A memory budget shared by the members of one export."""

    def __init__(self, limit_bytes: int):
        self.limit_bytes = limit_bytes
        self.used_bytes = 0

    def parse(self, data: bytes, name: str) -> Any:
        """``json.loads(data)`` if it fits what is left of the budget; else ``JSONBudgetError``."""
        kept, transient = estimate(data)
        if self.used_bytes + kept + transient > self.limit_bytes:
            raise JSONBudgetError(
                f"{name} holds more data than can be read safely (about {_mb(self.used_bytes + kept)} MB "
                f"once read; the limit is {_mb(self.limit_bytes)} MB). This is not the shape of an "
                "Instagram export; upload the ZIP Instagram sent you, unchanged."
            )
        try:
            value = json.loads(data)
        except RecursionError:
            raise JSONBudgetError(f"{name} is nested too deeply to be an Instagram export; refused.") from None
        except (ValueError, UnicodeDecodeError):
            raise JSONBudgetError(f"{name} is not valid JSON.") from None
        self.used_bytes += kept
        return value


def _mb(size: int) -> int:
    return max(1, round(size / 1024**2))
