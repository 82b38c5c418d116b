"""The curators' API routes, included under /api/ by `config.urls`."""

from django.urls import path

from labelling.api import views

urlpatterns = [
    path("review/queue/", views.ReviewQueueView.as_view(), name="api-review-queue"),
    path("review/bulk/", views.BulkView.as_view(), name="api-review-bulk"),
    path(
        "review/bulk/<uuid:op_id>/undo/",
        views.BulkUndoView.as_view(),
        name="api-review-bulk-undo",
    ),
    path("artworks/<int:pk>/genre/", views.GenreCorrectView.as_view(), name="api-genre"),
    path("artworks/<int:pk>/accept/", views.GenreAcceptView.as_view(), name="api-accept"),
    path("artworks/<int:pk>/revert/", views.GenreRevertView.as_view(), name="api-revert"),
]
