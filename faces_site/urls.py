from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Faces support"
admin.site.site_title = "Faces support"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("", include("accounts.urls")),
    path("", include("indexing.urls")),
    path("", include("search.urls")),
]
