"""The one artwork filter set, used by the catalog page and the REST API alike."""

import django_filters
from django import forms
from django.core.cache import cache
from django.db.models import Count, Max
from django.forms.utils import flatatt
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

from catalog.models import Artist, Artwork, Genre, LabelSource, Split, Style


class LongSelect(forms.Select):
    """A <select> rendered in Python, with the options of a queryset cached as HTML.

    Django renders every <option> through its own template, and a model choice field
    builds one model instance per option on every render: for the 1,119 artists that took
    most of a catalog page (~200 ms of ~250 ms on the real catalog), and the template
    rendering of the small selects (styles, genres, yes/no) was still ~20 ms of a search
    page. Here the escaped options are joined in Python; those of a queryset are cached
    for a minute as one HTML string (cheap to unpickle). Artists, styles and genres are
    keyed by the labels' generation (`catalog.selectors.labels_token`, renewed by any
    label write), so a change shows at once and no query is made; other querysets by
    their row count and largest id (one cheap query). Same HTML as `forms.Select` (tests
    compare them).
    """

    cache_seconds = 60

    def _options_html(self) -> str:
        def build():
            return "".join(
                f'<option value="{escape(str(v))}">{escape(str(label))}</option>'
                for v, label in self.choices
            )

        queryset = getattr(self.choices, "queryset", None)
        if queryset is None:
            return build()
        if queryset.model in (Artist, Style, Genre):
            # Keyed by the labels' generation: any save, delete or import of a label
            # changes it, and no query is needed to know that.
            from catalog.selectors import labels_token

            token = labels_token()
            if token is None:
                return build()
            generation = f"labels-{token}"
        else:
            totals = queryset.aggregate(n=Count("pk"), last=Max("pk"))
            generation = f"{totals['n']}:{totals['last']}"
        key = f"longselect:v3:{queryset.model._meta.label}:{generation}"
        return cache.get_or_set(key, build, self.cache_seconds)

    def render(self, name, value, attrs=None, renderer=None):
        options = self._options_html()
        for chosen in dict.fromkeys(self.format_value(value)):
            plain = f'<option value="{escape(chosen)}">'
            options = options.replace(plain, plain[:-1] + " selected>", 1)
        attrs = self.build_attrs(self.attrs, attrs)
        opening = format_html('<select name="{}"{}>', name, flatatt(attrs))
        return mark_safe(f"{opening}{options}</select>")  # noqa: S308 - parts are escaped


ANY_YES_NO = LongSelect(choices=[("", "Any"), ("true", "Yes"), ("false", "No")])


class ArtworkFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="title", lookup_expr="icontains", label="Title")
    artist = django_filters.ModelChoiceFilter(
        queryset=Artist.objects.all(), to_field_name="slug", label="Artist", widget=LongSelect
    )
    style = django_filters.ModelChoiceFilter(
        queryset=Style.objects.all(), to_field_name="name", label="Style", widget=LongSelect
    )
    genre = django_filters.ModelChoiceFilter(
        queryset=Genre.objects.all(), to_field_name="name", label="Genre", widget=LongSelect
    )
    has_genre = django_filters.BooleanFilter(
        field_name="genre",
        lookup_expr="isnull",
        exclude=True,
        label="Has a genre",
        widget=ANY_YES_NO,
    )
    label_source = django_filters.ChoiceFilter(
        field_name="genre_source",
        choices=LabelSource.choices,
        label="Label source",
        widget=LongSelect,
    )
    has_image = django_filters.BooleanFilter(
        field_name="image",
        method="filter_has_image",
        label="Has an image",
        widget=ANY_YES_NO,
    )
    split = django_filters.ChoiceFilter(
        field_name="style_split",
        choices=Split.choices,
        label="Split (style task)",
        widget=LongSelect,
    )
    year_min = django_filters.NumberFilter(field_name="year", lookup_expr="gte", label="From year")
    year_max = django_filters.NumberFilter(field_name="year", lookup_expr="lte", label="To year")

    class Meta:
        model = Artwork
        fields = []

    def filter_has_image(self, queryset, name, value):
        if value is None:
            return queryset
        return queryset.exclude(image="") if value else queryset.filter(image="")


# The filters that restrict another endpoint (search, similar artworks, generation) to a
# sub-collection: all but `q`, the catalog page's title search (a search's prompt).
SUBCOLLECTION_FILTERS = tuple(name for name in ArtworkFilter.base_filters if name != "q")
