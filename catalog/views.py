"""Catalog pages: browse with filters, and one artwork."""

from django.conf import settings
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render

from catalog import selectors
from catalog.filters import ArtworkFilter


class _CountedPaginator(Paginator):
    """A paginator told its row count (the whole catalog's, already cached for the page
    header), instead of counting 81k rows on every unfiltered page (~6 ms on PostgreSQL)."""

    def __init__(self, object_list, per_page, count: int):
        super().__init__(object_list, per_page)
        self.__dict__["count"] = count  # `count` is a cached_property


def artwork_list_view(request):
    artwork_filter = ArtworkFilter(request.GET or None, queryset=selectors.artwork_list())
    counts = selectors.catalog_counts()
    queryset = artwork_filter.qs if artwork_filter.is_bound else selectors.artwork_list()
    unfiltered = not artwork_filter.is_bound or (
        artwork_filter.is_valid()
        and all(
            artwork_filter.form.cleaned_data.get(name) in (None, "")
            for name in artwork_filter.filters
        )
    )
    if unfiltered:
        paginator = _CountedPaginator(queryset, settings.CATALOG_PAGE_SIZE, counts["artworks"])
    else:
        paginator = Paginator(queryset, settings.CATALOG_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "catalog/artwork_list.html",
        {
            "filter": artwork_filter,
            "page": page,
            "query": query.urlencode(),
            "counts": counts,
        },
    )


def artwork_detail_view(request, pk: int):
    artwork = get_object_or_404(selectors.artwork_list(), pk=pk)
    return render(
        request,
        "catalog/artwork_detail.html",
        {
            "artwork": artwork,
            "history": selectors.artwork_label_history(artwork),
        },
    )
