from django.urls import path, re_path

from generation import views

app_name = "generation"
urlpatterns = [
    path("", views.generate_view, name="generate"),
    path("gallery/", views.gallery_view, name="gallery"),
    path("<int:pk>/", views.generation_detail_view, name="detail"),
    path("<int:pk>/result/", views.generation_result_fragment, name="result"),
    path("<int:pk>/cancel/", views.generation_cancel_view, name="cancel"),
    path("<int:pk>/retry/", views.generation_retry_view, name="retry"),
    path("<int:pk>/rerun/", views.generation_rerun_view, name="rerun"),
    # A cache key is 64 hex digits; anything else never reaches the database.
    re_path(
        r"^loras/(?P<key>[0-9a-f]{64})/download/$", views.lora_download_view, name="lora-download"
    ),
]
