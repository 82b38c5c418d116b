from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from retrieval import selectors, services
from retrieval.models import EmbeddingSpace


@admin.register(EmbeddingSpace)
class EmbeddingSpaceAdmin(admin.ModelAdmin):
    list_display = ["embedder", "model_id", "dim", "has_image", "is_tiny", "created_at"]
    readonly_fields = [f.name for f in EmbeddingSpace._meta.fields]
    actions = ["rebuild_index"]

    @admin.action(
        description="Rebuild the search index (runs as a background job)", permissions=["change"]
    )
    def rebuild_index(self, request, queryset):
        job = services.index_rebuild_request(user=request.user)
        messages.info(
            request,
            format_html(
                'Index rebuild queued as <a href="{}">job #{}</a>; searches stay up meanwhile.',
                reverse("admin:jobs_job_change", args=[job.pk]),
                job.pk,
            ),
        )

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "index_status": selectors.index_status()}
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request):
        return False
