from django.contrib import admin

from catalog.models import Artist, Artwork, Genre, GenreLabel, Style


def _rounded(value) -> str:
    """A model's confidence as the pages show it: two decimals ("0.26"), "—" for none."""
    return "—" if value is None else f"{value:.2f}"


class RoundedConfidenceMixin:
    """`confidence_shown` / `genre_confidence_shown`: the stored probabilities, rounded."""

    @admin.display(description="confidence", ordering="confidence")
    def confidence_shown(self, obj):
        return _rounded(obj.confidence)

    @admin.display(description="genre confidence", ordering="genre_confidence")
    def genre_confidence_shown(self, obj):
        return _rounded(obj.genre_confidence)


@admin.register(Artist)
class ArtistAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "class_index"]
    search_fields = ["name", "slug"]


@admin.register(Style)
class StyleAdmin(admin.ModelAdmin):
    list_display = ["name", "folder", "class_index"]
    search_fields = ["name"]


@admin.register(Genre)
class GenreAdmin(admin.ModelAdmin):
    list_display = ["name", "class_index"]
    search_fields = ["name"]


class GenreLabelInline(RoundedConfidenceMixin, admin.TabularInline):
    model = GenreLabel
    extra = 0
    can_delete = False
    fields = ["genre", "source", "confidence_shown", "model_id", "user", "note", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False  # labels are added by services (history is append-only)

    def has_delete_permission(self, request, obj=None):
        return False  # never deleted (GenreLabel refuses too)


@admin.register(Artwork)
class ArtworkAdmin(RoundedConfidenceMixin, admin.ModelAdmin):
    list_display = ["title", "artist", "style", "genre", "genre_source", "year", "is_synthetic"]
    list_filter = ["style", "genre", "genre_source", "style_split", "is_synthetic"]
    search_fields = ["title", "path", "artist__name"]
    raw_id_fields = ["artist"]
    exclude = ["genre_confidence"]  # shown rounded (genre_confidence_shown)
    readonly_fields = [
        "genre",
        "genre_source",
        "genre_confidence_shown",
        "label_version",
        "imported",
        "created_at",
        "updated_at",
    ]
    inlines = [GenreLabelInline]
    list_select_related = ["artist", "style", "genre"]

    def has_delete_permission(self, request, obj=None):
        # An artwork with label history is never deleted; its labels' foreign key protects
        # it too, so "delete selected" lists such artworks as protected and refuses.
        if obj is not None and obj.genre_labels.exists():
            return False
        return super().has_delete_permission(request, obj)


@admin.register(GenreLabel)
class GenreLabelAdmin(RoundedConfidenceMixin, admin.ModelAdmin):
    list_display = [
        "artwork",
        "genre",
        "source",
        "confidence_shown",
        "model_id",
        "user",
        "undone",
        "created_at",
    ]
    list_filter = ["source", "genre"]
    raw_id_fields = ["artwork", "user"]
    exclude = ["confidence"]  # shown rounded (confidence_shown)
    readonly_fields = ["confidence_shown"]
    list_select_related = ["artwork__artist", "genre", "user"]

    @admin.display(description="undone", boolean=True)
    def undone(self, label):
        return label.is_undone

    def has_change_permission(self, request, obj=None):
        return False  # append-only history

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # never deleted (GenreLabel refuses too)
