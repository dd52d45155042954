"""Signals other apps listen to; accounts itself knows nothing about faces."""

from django.dispatch import Signal

# Sent with ``user`` when a user accepts the current consent text.
consent_given = Signal()
