from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("search/", views.search, name="search"),
    path("search/<slug:query_id>/", views.search_results, name="search_results"),
    path("search/<slug:query_id>/image.jpg", views.query_image, name="query_image"),
    path("gallery/", views.gallery, name="gallery"),
    path("gallery/all/", views.gallery_all, name="gallery_all"),
    path("faces/<int:face_id>/", views.face_detail, name="face"),
    path("faces/<int:face_id>/thumb.jpg", views.face_thumbnail, name="face_thumbnail"),
    path("photos/<int:photo_id>/image.jpg", views.photo_image, name="photo_image"),
]
