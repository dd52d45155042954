"""Query photos are biometric too: they go when the user's face data goes."""

from django.conf import settings
from django.db.models.signals import pre_delete
from django.dispatch import receiver

from indexing.deletion import face_data_deleted

from .views import forget_queries


@receiver(face_data_deleted, dispatch_uid="faces_forget_queries")
@receiver(pre_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="faces_forget_queries_on_delete")
def forget_user_queries(sender, **kwargs) -> None:
    forget_queries(kwargs.get("user") or kwargs["instance"])
