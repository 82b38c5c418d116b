from django.urls import path

from labelling import views

app_name = "labelling"
urlpatterns = [
    path("", views.review_view, name="review"),
    path("item/<int:pk>/", views.review_item_fragment, name="item"),
    path("bulk/", views.bulk_view, name="bulk"),
    path("bulk/<uuid:op_id>/undo/", views.bulk_undo_view, name="bulk-undo"),
    path("artworks/<int:pk>/revert/<int:label_id>/", views.revert_view, name="revert"),
]
