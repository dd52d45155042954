"""Deleting an account deletes every photo, face and collection it owned."""

from django.conf import settings
from django.db.models.signals import pre_delete
from django.dispatch import receiver
from django_q.signals import post_spawn

from .deletion import delete_face_data


@receiver(pre_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="faces_delete_user_data")
def delete_user_data(sender, instance, **kwargs) -> None:
    delete_face_data(instance, photos=True)


@receiver(post_spawn, dispatch_uid="faces_resume_on_worker_start")
def resume_after_restart(sender, proc_name, **kwargs) -> None:
    """A Redis broker loses the tasks a killed worker held: requeue them on start.

    The ORM broker redelivers unacknowledged tasks itself, so this only runs
    for Redis (and a periodic schedule backs it up for both).
    """
    if settings.Q_CLUSTER.get("redis"):
        from .pipeline import resume_on_worker_start

        resume_on_worker_start(settings.FACES_RESUME_STALE_SECONDS)
