from django.contrib import admin, messages
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html

from generation import selectors, services
from generation.models import Generation, LoraCacheEntry


@admin.register(LoraCacheEntry)
class LoraCacheEntryAdmin(admin.ModelAdmin):
    """The LoRA cache: size, uses, last use; evict by hand or down to the size budget."""

    list_display = [
        "short_key",
        "kind",
        "label",
        "status",
        "size",
        "uses",
        "last_used_at",
        "trained_at",
        "is_tiny",
        "downloads",
    ]
    list_filter = ["status", "kind", "is_tiny"]
    search_fields = ["key", "label"]
    readonly_fields = [f.name for f in LoraCacheEntry._meta.fields]
    actions = ["evict_selected", "evict_to_budget"]

    @admin.display(description="key")
    def short_key(self, entry):
        return entry.key[:12]

    @admin.display(description="size", ordering="size_bytes")
    def size(self, entry):
        return filesizeformat(entry.size_bytes) if entry.size_bytes else "-"

    @admin.display(description="download")
    def downloads(self, entry):
        if entry.status != "ready":
            return "-"
        url = reverse("generation:lora-download", args=[entry.key])
        return format_html(
            '<a href="{}?as=diffusers">diffusers</a> · <a href="{}?as=kohya">kohya</a>',
            url,
            url,
        )

    @admin.action(
        description="Evict the selected LoRAs (delete their files)", permissions=["delete"]
    )
    def evict_selected(self, request, queryset):
        freed = sum(services.lora_evict(entry) for entry in queryset)
        messages.info(
            request, f"Evicted {queryset.count()} LoRA(s), freed {filesizeformat(freed)}."
        )

    @admin.action(
        description="Evict least-recently-used LoRAs down to the size budget",
        permissions=["delete"],
    )
    def evict_to_budget(self, request, queryset):
        report = services.lora_cache_evict()
        messages.info(
            request,
            f"Cache {filesizeformat(report.before_bytes)} -> {filesizeformat(report.after_bytes)} "
            f"(budget {filesizeformat(report.budget_bytes) if report.budget_bytes else 'none'}); "
            f"evicted {len(report.evicted)}, kept {report.kept_in_use} in use.",
        )

    def changelist_view(self, request, extra_context=None):
        stats = selectors.lora_cache_stats()
        budget = filesizeformat(stats["budget_bytes"]) if stats["budget_bytes"] else "no limit"
        extra_context = {
            **(extra_context or {}),
            "title": f"LoRA cache: {stats['ready']} ready, {filesizeformat(stats['size_bytes'])} "
            f"of {budget}",
        }
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "prompt",
        "user",
        "status",
        "phase",
        "is_tiny",
        "image_flagged",
        "baseline_flagged",
        "created_at",
    ]
    list_filter = ["phase", "is_tiny", "image_flagged", "baseline_flagged", "job__status"]
    search_fields = ["prompt"]
    readonly_fields = [f.name for f in Generation._meta.fields]
    list_select_related = ["job", "user"]

    def has_add_permission(self, request):
        return False
