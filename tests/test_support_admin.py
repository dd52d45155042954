"""Support staff (the view-only "Support" group) can look but not change, and every action is logged."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone
from django_q.models import Failure, OrmQ

from accounts.consent import CONSENT_POINTS
from accounts.models import StaffAccessLog
from indexing.models import IndexRun, Post, Source
from tests.conftest import make_staff

pytestmark = pytest.mark.django_db

User = get_user_model()


@pytest.fixture
def support_user(db):
    return make_staff("support@example.com", support=True)


@pytest.fixture
def support_client(support_user):
    client = Client()
    client.force_login(support_user)
    return client


@pytest.fixture
def root_client(db):
    root = make_staff("root@example.com", superuser=True)
    client = Client()
    client.force_login(root)
    client.user = root
    return client


@pytest.fixture
def failed_run(user):
    source = Source.objects.create(owner=user, kind=Source.Kind.UPLOAD, name="upload")
    run = IndexRun.objects.create(owner=user, source=source, status=IndexRun.Status.DONE, posts_total=2,
                                  posts_done=1, posts_failed=1, finished_at=timezone.now())
    Post.objects.create(owner=user, source=source, run=run, external_id="ok.jpg", status=Post.Status.INDEXED,
                        timestamp=timezone.now())
    Post.objects.create(owner=user, source=source, run=run, external_id="bad.jpg", status=Post.Status.FAILED,
                        error="cannot identify image file", timestamp=timezone.now())
    return run


def failure() -> Failure:
    return Failure.objects.create(id="a" * 32, name="index-1", func="indexing.pipeline.index_post", args=(1,),
                                  kwargs={}, started=timezone.now(), stopped=timezone.now(), success=False,
                                  result="boom")


def test_support_is_offered_no_action_anywhere_in_the_admin(support_user):
    request = RequestFactory().get("/admin/")
    request.user = support_user
    offered = {
        model._meta.label: sorted(model_admin.get_actions(request))
        for model, model_admin in admin.site._registry.items()
        if model_admin.has_view_permission(request)
    }
    assert "django_q.Failure" in offered and "indexing.IndexRun" in offered
    assert {label: actions for label, actions in offered.items() if actions} == {}


def test_support_cannot_retry_failed_posts(support_client, failed_run):
    changelist = reverse("admin:indexing_indexrun_changelist")
    page = support_client.get(changelist)
    assert page.status_code == 200 and "retry_failed_posts" not in page.content.decode()
    support_client.post(changelist, {"action": "retry_failed_posts", "_selected_action": [failed_run.pk]})
    assert Post.objects.get(run=failed_run, external_id="bad.jpg").status == Post.Status.FAILED
    assert not StaffAccessLog.objects.filter(action="retry_failed_posts").exists()


def test_support_cannot_resubmit_queue_tasks(support_client):
    task = failure()
    changelist = reverse("admin:django_q_failure_changelist")
    assert "resubmit_task" not in support_client.get(changelist).content.decode()
    support_client.post(changelist, {"action": "resubmit_task", "_selected_action": [task.pk]})
    assert Failure.objects.filter(pk=task.pk).exists() and not OrmQ.objects.exists()
    # The task pages are read-only for Support.
    change = support_client.get(reverse("admin:django_q_failure_change", args=[task.pk]))
    assert change.status_code == 200 and 'name="_save"' not in change.content.decode()
    assert support_client.post(reverse("admin:django_q_failure_delete", args=[task.pk]), {"post": "yes"}).status_code == 403


def test_actions_that_run_are_in_the_staff_access_log(root_client, failed_run):
    task = failure()
    response = root_client.post(reverse("admin:django_q_failure_changelist"),
                                {"action": "resubmit_task", "_selected_action": [task.pk]})
    assert response.status_code == 302 and OrmQ.objects.count() == 1
    retry = root_client.post(reverse("admin:indexing_indexrun_changelist"),
                             {"action": "retry_failed_posts", "_selected_action": [failed_run.pk]})
    assert retry.status_code == 302
    logs = {(log.action, log.object_repr) for log in StaffAccessLog.objects.filter(staff=root_client.user)}
    assert ("resubmit_task", f"django_q.Failure ['{task.pk}']") in logs
    assert ("retry_failed_posts", f"indexing.IndexRun [{failed_run.pk}]") in logs


def test_runs_are_read_only_even_for_superusers(root_client, failed_run):
    url = reverse("admin:indexing_indexrun_change", args=[failed_run.pk])
    page = root_client.get(url)
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    root_client.post(url, {"status": "queued", "owner": failed_run.owner_id, "source": failed_run.source_id})
    assert IndexRun.objects.get(pk=failed_run.pk).status == IndexRun.Status.DONE
    assert root_client.get(reverse("admin:indexing_indexrun_add")).status_code == 403


def test_runs_list_shows_progress_failures_and_filters_by_them(support_client, failed_run, user):
    clean = IndexRun.objects.create(owner=user, source=failed_run.source, status=IndexRun.Status.DONE,
                                    posts_total=3, posts_done=3)
    changelist = reverse("admin:indexing_indexrun_changelist")
    page = support_client.get(changelist).content.decode()
    assert "<progress" in page and "2/2" in page and "3/3" in page
    assert f"run__id__exact={failed_run.pk}&amp;status__exact=failed" in page
    failing = support_client.get(changelist, {"has_failures": "yes"}).context["cl"].result_list
    assert [run.pk for run in failing] == [failed_run.pk]
    passing = support_client.get(changelist, {"has_failures": "no"}).context["cl"].result_list
    assert [run.pk for run in passing] == [clean.pk]
    failed_posts = support_client.get(reverse("admin:indexing_post_changelist"),
                                      {"run__id__exact": failed_run.pk, "status__exact": "failed"})
    assert [post.external_id for post in failed_posts.context["cl"].result_list] == ["bad.jpg"]


def test_a_users_page_links_to_their_runs_and_failed_posts(support_client, failed_run, user, other_user):
    page = support_client.get(reverse("admin:auth_user_change", args=[user.pk])).content.decode()
    assert f"/admin/indexing/indexrun/?owner__id__exact={user.pk}" in page
    assert f"/admin/indexing/post/?owner__id__exact={user.pk}&amp;status__exact=failed" in page
    assert "Failed posts (1)" in page
    posts = support_client.get(reverse("admin:indexing_post_changelist"),
                               {"owner__id__exact": user.pk, "status__exact": "failed"})
    assert [post.external_id for post in posts.context["cl"].result_list] == ["bad.jpg"]
    runs = support_client.get(reverse("admin:indexing_indexrun_changelist"), {"owner__id__exact": other_user.pk})
    assert list(runs.context["cl"].result_list) == []


def test_the_consent_text_says_what_support_staff_can_see():
    text = " ".join(CONSENT_POINTS)
    assert "previews of your photos" in text and "logged" in text
    assert "cannot see your faces" not in text
