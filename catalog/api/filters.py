"""Query-parameter serializers derived from a FilterSet, for the schema.

Endpoints that are not generic views (search, similar, the review queue, generation
requests) take the catalog's filters too; their schema lists them through a serializer
built here from the FilterSet itself, so the names, types and choices have one source:
`catalog.filters.ArtworkFilter` (and `labelling.filters.ReviewFilter`). The FilterSet
still validates them.
"""

import django_filters
from django.db import models
from rest_framework import serializers


def _field_for(filterset_class, name: str, filt) -> serializers.Field:
    label = str(filt.label) if filt.label else None
    if isinstance(filt, django_filters.ModelChoiceFilter):
        model = filt.extra["queryset"].model
        key = filt.extra.get("to_field_name") or "pk"
        return serializers.CharField(required=False, help_text=f"{model._meta.verbose_name} {key}")
    if isinstance(filt, django_filters.BooleanFilter):
        return serializers.BooleanField(required=False, allow_null=True, default=None)
    if isinstance(filt, django_filters.ChoiceFilter):
        return serializers.ChoiceField(choices=filt.extra["choices"], required=False)
    if isinstance(filt, django_filters.NumberFilter):
        model_field = filterset_class._meta.model._meta.get_field(filt.field_name)
        bounds = {k: filt.extra[k] for k in ("min_value", "max_value") if k in filt.extra}
        if isinstance(model_field, models.IntegerField):
            return serializers.IntegerField(required=False, **bounds)
        return serializers.FloatField(required=False, **bounds)
    return serializers.CharField(required=False, help_text=label)


def filter_params_serializer(
    filterset_class, name: str, *, exclude: tuple[str, ...] = (), doc: str = ""
) -> type[serializers.Serializer]:
    """A serializer class with one optional field per filter of `filterset_class`."""
    fields = {
        filter_name: _field_for(filterset_class, filter_name, filt)
        for filter_name, filt in filterset_class.base_filters.items()
        if filter_name not in exclude
    }
    return type(name, (serializers.Serializer,), {"__doc__": doc, **fields})
