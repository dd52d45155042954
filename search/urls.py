from django.urls import path

from . import people_views, video_views, views

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

# People (search/people_views.py).
urlpatterns += [
    path("people/", people_views.people_list, name="people"),
    path("people/group/", people_views.people_group, name="people_group"),
    path("people/<int:person_id>/", people_views.person_detail, name="person"),
    path("people/<int:person_id>/rename/", people_views.person_rename, name="person_rename"),
    path("people/<int:person_id>/merge/", people_views.person_merge, name="person_merge"),
    path("people/<int:person_id>/move/", people_views.person_move, name="person_move"),
    path("people/<int:person_id>/hide/", people_views.person_hide, name="person_hide"),
    path("faces/<int:face_id>/me/", people_views.face_me, name="face_me"),
    path("faces/<int:face_id>/name/", people_views.face_name, name="face_name"),
]

# Videos (search/video_views.py).
urlpatterns += [
    path("photos/<int:photo_id>/video", video_views.photo_video, name="photo_video"),
    path("faces/<int:face_id>/frame.jpg", video_views.face_frame, name="face_frame"),
]
