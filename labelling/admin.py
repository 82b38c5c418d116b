"""Admin for the genre model: its trained versions, and retraining as a background job."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from labelling import genre_services
from labelling.models import GenreModelVersion


@admin.register(GenreModelVersion)
class GenreModelVersionAdmin(admin.ModelAdmin):
    """Trained versions, newest first; "Retrain" (an action, and a button that works with
    no version yet) queues `labelling.train_genre_model` as a job with progress."""

    list_display = ["version", "trained", "calibration", "accuracy", "fused", "user", "created_at"]
    readonly_fields = [f.name for f in GenreModelVersion._meta.fields]
    actions = ["retrain"]
    change_list_template = "admin/labelling/genremodelversion/change_list.html"

    @admin.display(description="accuracy (calibration part)")
    def accuracy(self, row):
        value = (row.metrics or {}).get("calibration_accuracy")
        return "—" if value is None else f"{value:.3f}"

    @admin.display(description="fusion", boolean=True)
    def fused(self, row):
        return bool(row.fusion and "weights" in row.fusion)

    @admin.action(
        description="Retrain the genre model (runs as a background job)", permissions=["change"]
    )
    def retrain(self, request, queryset=None):
        job = genre_services.genre_model_train_request(user=request.user)
        messages.info(
            request,
            f"Genre model training queued as job #{job.pk}; labelling keeps the current "
            "version until the new one is published.",
        )

    def get_urls(self):
        view = self.admin_site.admin_view(require_POST(self.retrain_view))
        return [
            path("retrain/", view, name="labelling_genremodelversion_retrain"),
            *super().get_urls(),
        ]

    def retrain_view(self, request):
        if not self.has_change_permission(request):
            raise PermissionDenied
        self.retrain(request)
        return redirect(reverse("admin:labelling_genremodelversion_changelist"))

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_retrain": self.has_change_permission(request),
        }
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # labels name their model versions
