from django.urls import path

from . import views

urlpatterns = [
    path("consent/", views.consent, name="consent"),
    path("consent/withdraw/", views.withdraw_consent, name="consent_withdraw"),
    path("settings/delete-account/", views.delete_account, name="delete_account"),
]
