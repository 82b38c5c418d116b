"""Catalog pages: browse with filters, and one artwork."""

from django.conf import settings
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render

from catalog import selectors
from catalog.filters import ArtworkFilter


def artwork_list_view(request):
    artwork_filter = ArtworkFilter(request.GET or None, queryset=selectors.artwork_list())
    queryset = artwork_filter.qs if artwork_filter.is_bound else selectors.artwork_list()
    page = Paginator(queryset, settings.CATALOG_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "catalog/artwork_list.html",
        {
            "filter": artwork_filter,
            "page": page,
            "query": query.urlencode(),
            "counts": selectors.catalog_counts(),
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
