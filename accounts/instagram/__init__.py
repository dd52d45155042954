"""Log in with, or link, an Instagram professional account.

An allauth provider for the "Instagram API with Instagram Login" (Business
Login for Instagram). allauth's bundled ``instagram`` provider targets the Basic
Display API, which Meta shut down in December 2024.
"""
