from django.contrib import admin

from catalog.models import Artist, Artwork, Genre, GenreLabel, Style


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


class GenreLabelInline(admin.TabularInline):
    model = GenreLabel
    extra = 0
    can_delete = False
    readonly_fields = ["genre", "source", "confidence", "model_id", "user", "note", "created_at"]

    def has_add_permission(self, request, obj=None):
        return False  # labels are added by services (history is append-only)


@admin.register(Artwork)
class ArtworkAdmin(admin.ModelAdmin):
    list_display = ["title", "artist", "style", "genre", "genre_source", "year", "is_synthetic"]
    list_filter = ["style", "genre", "genre_source", "style_split", "is_synthetic"]
    search_fields = ["title", "path", "artist__name"]
    raw_id_fields = ["artist"]
    readonly_fields = [
        "genre",
        "genre_source",
        "genre_confidence",
        "label_version",
        "created_at",
        "updated_at",
    ]
    inlines = [GenreLabelInline]
    list_select_related = ["artist", "style", "genre"]


@admin.register(GenreLabel)
class GenreLabelAdmin(admin.ModelAdmin):
    list_display = ["artwork", "genre", "source", "confidence", "model_id", "user", "created_at"]
    list_filter = ["source", "genre"]
    raw_id_fields = ["artwork", "user"]
    list_select_related = ["artwork__artist", "genre", "user"]

    def has_change_permission(self, request, obj=None):
        return False  # append-only history

    def has_add_permission(self, request):
        return False
