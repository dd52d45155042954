"""Keep OAuth tokens out of every log line.

Instagram's ``paging.next`` URLs and token responses carry the access token, and
libraries log URLs at debug level; this filter scrubs them wherever they appear.
"""

from __future__ import annotations

import logging
import re

TOKEN_PATTERN = re.compile(
    r"(?P<key>access_token|client_secret|code|refresh_token)(?P<sep>=|\"\s*:\s*\"|':\s*')(?P<value>[^&\s\"']+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """Replace the value of every token-like parameter in ``text``."""
    return TOKEN_PATTERN.sub(lambda m: f"{m['key']}{m['sep']}[redacted]", text)


class RedactTokensFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def logging_config(level: str) -> dict:
    """Django's LOGGING: everything to the console through the token filter; chatty libraries quieter."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact_tokens": {"()": "faces_site.logging.RedactTokensFilter"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["redact_tokens"]}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"urllib3": {"level": "WARNING"}, "botocore": {"level": "WARNING"}},
    }
