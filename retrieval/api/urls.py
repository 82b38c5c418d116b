"""The retrieval API's routes, included under /api/ by `config.urls`."""

from django.urls import path

from retrieval.api import views

urlpatterns = [
    path("search/", views.SearchView.as_view(), name="api-search"),
    path("artworks/<int:pk>/similar/", views.SimilarView.as_view(), name="api-similar"),
    path("index/", views.IndexView.as_view(), name="api-index"),
]
