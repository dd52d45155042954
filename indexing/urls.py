from django.urls import path

from . import views

urlpatterns = [
    path("settings/", views.privacy, name="privacy"),
    path("import/", views.privacy, name="import"),  # replaced by the import page
]
