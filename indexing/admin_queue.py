"""django-q2's task admin, with the staff rules of the rest of the admin.

django-q registers "Resubmit selected tasks to queue" without a permission, so
Django offers it to anyone who may view tasks, view-only Support staff
included, and nothing records who re-ran what. Re-registered here through
``StaffAuditMixin``, the action needs the "change" permission Support lacks and
each run of it is in the staff access log.
"""

from __future__ import annotations

from django.contrib import admin
from django_q import admin as q_admin
from django_q.models import Failure, OrmQ, Schedule, Success

from accounts.admin import StaffAuditMixin


class TaskAdmin(StaffAuditMixin, q_admin.TaskAdmin):
    pass


class FailAdmin(StaffAuditMixin, q_admin.FailAdmin):
    pass


class ScheduleAdmin(StaffAuditMixin, q_admin.ScheduleAdmin):
    pass


class QueueAdmin(StaffAuditMixin, q_admin.QueueAdmin):
    pass


for model, model_admin in ((Success, TaskAdmin), (Failure, FailAdmin), (Schedule, ScheduleAdmin), (OrmQ, QueueAdmin)):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
        admin.site.register(model, model_admin)
