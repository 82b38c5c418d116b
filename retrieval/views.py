"""Search page and the similar-artworks fragment of the artwork page."""

from django.shortcuts import get_object_or_404, render

from catalog.filters import SUBCOLLECTION_FILTERS, ArtworkFilter
from catalog.models import Artwork
from catalog.selectors import example_prompt
from retrieval import selectors, services
from retrieval.forms import SearchForm

# The sub-collection filters the page shows (every one of `SUBCOLLECTION_FILTERS` works
# in its URL, as in the API).
SHOWN_FILTERS = ["artist", "style", "genre", "has_genre", "label_source"]


def search_view(request):
    """The search page: a prompt (GET, so the URL holds the prompt and the filters and a
    result can be bookmarked, shared and reloaded), or an uploaded image (POST).

    A refused request (a bad value, an upload that is not a usable image) re-renders the
    form with the reasons and answers 400.
    """
    data = request.POST if request.method == "POST" else request.GET
    bound = request.method == "POST" or any(
        name in data for name in ("q", "k", *SUBCOLLECTION_FILTERS)
    )
    example = example_prompt()
    form = SearchForm(
        data if bound else None,
        request.FILES or None,
        image_search=selectors.image_search_available(),
        image_cost=selectors.image_search_cost(),
        example=example,
    )
    artwork_filter = ArtworkFilter(data if bound else None, queryset=Artwork.objects.none())
    context = {
        "form": form,
        "filter": artwork_filter,
        "filter_names": SHOWN_FILTERS,
        "example": example,
    }
    status = 200
    if bound:
        # Both validate, so every reason is shown at once.
        valid = form.is_valid() & artwork_filter.is_valid()
        status = 200 if valid else 400
    if bound and status == 200:
        filters = {n: data.get(n) for n in SUBCOLLECTION_FILTERS if data.get(n)}
        try:
            context["result"] = selectors.artwork_search(
                form.cleaned_data.get("q") or "",
                k=form.cleaned_data.get("k") or 24,
                filters=filters,
                image=form.cleaned_data.get("image"),
            )
        except selectors.SearchInputError as exc:
            context["error"] = str(exc)
            status = 400
        except services.RetrievalUnavailable as exc:
            context["error"] = str(exc)  # the page says how to build the index
    return render(request, "retrieval/search.html", context, status=status)


def similar_fragment(request, pk: int):
    artwork = get_object_or_404(Artwork, pk=pk)
    try:
        pairs, error = selectors.artwork_similar(artwork, k=8), ""
    except services.RetrievalUnavailable as exc:  # the fragment says why, never a 500
        pairs, error = [], str(exc)
    return render(request, "retrieval/_similar.html", {"pairs": pairs, "error": error})
