from django.apps import AppConfig


class InstagramLoginConfig(AppConfig):
    # A label of its own: "instagram" is taken by allauth's bundled provider app.
    name = "accounts.instagram"
    label = "instagram_login"
    verbose_name = "Instagram login"
