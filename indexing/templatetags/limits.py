"""The upload limit, for pages that check a file's size before sending it."""

from django import template
from django.conf import settings

register = template.Library()


@register.simple_tag
def upload_limit_bytes() -> int:
    return settings.FACES_MAX_UPLOAD_BYTES


@register.simple_tag
def upload_limit_mb() -> int:
    return settings.FACES_MAX_UPLOAD_BYTES // (1024 * 1024)
