from django.urls import path

from retrieval import views

app_name = "retrieval"
urlpatterns = [
    path("search/", views.search_view, name="search"),
    path("artworks/<int:pk>/similar/", views.similar_fragment, name="similar"),
]
