"""Search page and the similar-artworks fragment of the artwork page."""

from django.shortcuts import get_object_or_404, render

from catalog.filters import ArtworkFilter
from catalog.models import Artwork
from retrieval import selectors, services
from retrieval.forms import SearchForm

FILTER_NAMES = ["artist", "style", "genre", "has_genre", "label_source"]


def search_view(request):
    data = request.POST if request.method == "POST" else request.GET
    form = SearchForm(data or None, request.FILES or None)
    artwork_filter = ArtworkFilter(data or None, queryset=Artwork.objects.none())
    context = {"form": form, "filter": artwork_filter, "filter_names": FILTER_NAMES}
    if form.is_bound and form.is_valid() and (not data or artwork_filter.is_valid()):
        filters = {n: data.get(n) for n in FILTER_NAMES if data.get(n)}
        try:
            context["result"] = selectors.artwork_search(
                form.cleaned_data.get("q") or "",
                k=form.cleaned_data.get("k") or 24,
                filters=filters,
                image=form.cleaned_data.get("image"),
            )
        except selectors.SearchInputError as exc:
            context["error"] = str(exc)
        except services.RetrievalUnavailable as exc:
            context["error"] = str(exc)
    status = 400 if context.get("error") and "index" not in context.get("error", "") else 200
    return render(
        request, "retrieval/search.html", context, status=status if form.is_bound else 200
    )


def similar_fragment(request, pk: int):
    artwork = get_object_or_404(Artwork, pk=pk)
    try:
        pairs = selectors.artwork_similar(artwork, k=8)
    except services.RetrievalUnavailable:
        pairs = []
    return render(request, "retrieval/_similar.html", {"pairs": pairs})
