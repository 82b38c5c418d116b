"""The accounts API's routes, included under /api/ by `config.urls`."""

from django.urls import path

from accounts.api import views

urlpatterns = [
    path("auth/token/", views.TokenView.as_view(), name="api-token"),
]
