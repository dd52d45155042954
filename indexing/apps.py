from django.apps import AppConfig
from django.core.signals import setting_changed


def _pixel_limit_changed(setting: str, **kwargs) -> None:
    if setting == "FACES_MAX_IMAGE_PIXELS":
        from .images import apply_pixel_limit

        apply_pixel_limit()


class IndexingConfig(AppConfig):
    name = "indexing"
    verbose_name = "Photo library and indexing"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (connects the account-deletion receiver)
        from .images import apply_pixel_limit

        # Pillow's decompression-bomb guard, set deliberately from settings.
        apply_pixel_limit()
        setting_changed.connect(_pixel_limit_changed, dispatch_uid="faces_pixel_limit")
