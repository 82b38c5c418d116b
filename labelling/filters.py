"""The review filters: the catalog's filter set plus the label's confidence range.

The review queue and bulk changes (pages and API) choose artworks with this one set; its
names are what they accept (`REVIEW_FILTERS`) and what the API schema lists.
"""

import django_filters
from django import forms

from catalog.filters import ArtworkFilter

_BETWEEN = "a number between 0 and 1"


def _confidence(lookup: str, label: str) -> django_filters.NumberFilter:
    return django_filters.NumberFilter(
        field_name="genre_confidence",
        lookup_expr=lookup,
        label=label,
        min_value=0,
        max_value=1,
        error_messages={"invalid": _BETWEEN, "min_value": _BETWEEN, "max_value": _BETWEEN},
        widget=forms.NumberInput(attrs={"min": 0, "max": 1, "step": 0.05}),
    )


class ReviewFilter(ArtworkFilter):
    confidence_min = _confidence("gte", "Confidence from")
    confidence_max = _confidence("lte", "Confidence to")


REVIEW_FILTERS = tuple(ReviewFilter.base_filters)
