from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("search/", views.home, name="search"),
    path("gallery/", views.home, name="gallery"),
    path("people/", views.home, name="people"),
]
