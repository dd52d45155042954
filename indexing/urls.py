from django.urls import path

from . import views

urlpatterns = [
    path("settings/", views.privacy, name="privacy"),
    path("import/", views.import_page, name="import"),
    path("import/photos/", views.upload_photos, name="upload_photos"),
    path("import/export/", views.upload_export, name="upload_export"),
    path("runs/<int:run_id>/", views.run_detail, name="run"),
    path("runs/<int:run_id>/progress.json", views.run_progress_json, name="run_progress"),
    path("runs/<int:run_id>/cancel/", views.run_cancel, name="run_cancel"),
    path("runs/<int:run_id>/retry/", views.run_retry, name="run_retry"),
]
urlpatterns += [
    path("instagram/connect/", views.instagram_connect, name="instagram_connect"),
    path("instagram/<int:source_id>/sync/", views.instagram_sync, name="instagram_sync"),
]
urlpatterns += [path("instagram/linked/", views.instagram_linked, name="instagram_linked")]

# Deleting face data asks first; afterwards the stored photos can be indexed again.
from . import data_views  # noqa: E402

urlpatterns += [
    path("settings/delete/", data_views.delete_confirm, name="delete_confirm"),
    path("settings/reindex/", data_views.reindex, name="reindex"),
]
