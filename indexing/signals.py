"""Deleting an account deletes every photo, face and collection it owned."""

from django.conf import settings
from django.db.models.signals import pre_delete
from django.dispatch import receiver

from .deletion import delete_face_data


@receiver(pre_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="faces_delete_user_data")
def delete_user_data(sender, instance, **kwargs) -> None:
    delete_face_data(instance, photos=True)
