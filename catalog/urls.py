from django.urls import path

from catalog import views

app_name = "catalog"
urlpatterns = [
    path("", views.artwork_list_view, name="artwork-list"),
    path("artworks/<int:pk>/", views.artwork_detail_view, name="artwork-detail"),
]
