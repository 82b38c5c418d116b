"""The one artwork filter set, used by the catalog page and the REST API alike."""

import django_filters
from django import forms

from catalog.models import Artist, Artwork, Genre, LabelSource, Split, Style

ANY_YES_NO = forms.Select(choices=[("", "Any"), ("true", "Yes"), ("false", "No")])


class ArtworkFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="title", lookup_expr="icontains", label="Title")
    artist = django_filters.ModelChoiceFilter(
        queryset=Artist.objects.all(), to_field_name="slug", label="Artist"
    )
    style = django_filters.ModelChoiceFilter(
        queryset=Style.objects.all(), to_field_name="name", label="Style"
    )
    genre = django_filters.ModelChoiceFilter(
        queryset=Genre.objects.all(), to_field_name="name", label="Genre"
    )
    has_genre = django_filters.BooleanFilter(
        field_name="genre",
        lookup_expr="isnull",
        exclude=True,
        label="Has a genre",
        widget=ANY_YES_NO,
    )
    label_source = django_filters.ChoiceFilter(
        field_name="genre_source", choices=LabelSource.choices, label="Label source"
    )
    has_image = django_filters.BooleanFilter(
        field_name="image",
        method="filter_has_image",
        label="Has an image",
        widget=ANY_YES_NO,
    )
    split = django_filters.ChoiceFilter(
        field_name="style_split", choices=Split.choices, label="Split (style task)"
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
