"""Curator pages: keyboard-first review, bulk relabel with preview and undo, revert."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from catalog.models import Artwork, Genre, GenreLabel
from labelling import selectors, services
from labelling.filters import REVIEW_FILTERS, ReviewFilter
from labelling.models import BulkOperation


def curator_required(view):
    """Anonymous visitors are sent to sign in; signed-in non-curators get a 403."""
    return login_required(permission_required("catalog.curate_genre", raise_exception=True)(view))


# The review filters the pages show (the rest of `REVIEW_FILTERS` work in their URLs too).
QUEUE_FILTERS = ["genre", "style", "artist", "label_source", "confidence_min", "confidence_max"]


def _review_params(data) -> dict:
    return {n: data.get(n) for n in REVIEW_FILTERS if data.get(n)}


def _item_context(artwork: Artwork, item=None) -> dict:
    return {
        "artwork": artwork,
        "item": item,
        "suggestion": services.model_suggestion(artwork),
        "history": selectors.artwork_history(artwork),
        "genres": list(Genre.objects.order_by("name")),
    }


@curator_required
def review_view(request):
    params = _review_params(request.GET)
    artwork_filter = ReviewFilter(request.GET or None, queryset=Artwork.objects.none())
    try:
        queue = selectors.review_queue(params, limit=50)
        error = None
    except selectors.ReviewFilterError as exc:
        queue, error = [], exc.errors
    current = queue[0] if queue else None
    context = {
        "queue": queue,
        "filter": artwork_filter,
        "queue_filters": QUEUE_FILTERS,
        "params": params,
        "error": error,
    }
    if current:
        context.update(_item_context(current.artwork, current))
    return render(request, "labelling/review.html", context)


@curator_required
def review_item_fragment(request, pk: int):
    artwork = get_object_or_404(Artwork.objects.select_related("artist", "style", "genre"), pk=pk)
    return render(request, "labelling/_review_item.html", _item_context(artwork))


@curator_required
def bulk_view(request):
    """GET: choose artworks by filter, preview the change. POST: apply it."""
    data = request.POST if request.method == "POST" else request.GET
    params = _review_params(data)
    action = data.get("action") or ""
    genre = Genre.objects.filter(name=data.get("target")).first() if data.get("target") else None
    context = {
        "filter": ReviewFilter(data or None, queryset=Artwork.objects.none()),
        "queue_filters": QUEUE_FILTERS,
        "genres": Genre.objects.order_by("name"),
        "action": action,
        "target": genre,
        "params": params,
        "operations": selectors.bulk_operations(),
    }
    if action not in ("", *BulkOperation.Action.values):
        context["error"] = f"Unknown action {action!r}."
    elif action:
        if action == BulkOperation.Action.RELABEL and genre is None and data.get("target") != "":
            context["error"] = "Choose the genre to relabel to."
        else:
            try:
                # Refused past services.BULK_MAX (the page says so), never cut short.
                changes = services.bulk_plan_select(action, genre, filters=params)
            except selectors.ReviewFilterError as exc:
                context["error"] = exc.errors
                changes = None
            except services.BulkTooLarge as exc:
                context["error"] = f"{str(exc).capitalize()} (at most {exc.limit} at once)."
                changes = None
            if request.method == "POST" and not context.get("error"):
                # isascii: "²".isdigit() is True, and int("²") raises.
                ids = [
                    int(i)
                    for i in request.POST.getlist("artwork")
                    if i.isascii() and i.isdigit() and len(i) < 19
                ]
                # The label version each row had in the preview: an artwork changed since
                # is left alone and listed (bulk_apply checks each like a single edit).
                versions = {}
                for i in ids:
                    seen = request.POST.get(f"version_{i}", "")
                    if seen.isascii() and seen.isdigit() and len(seen) < 10:
                        versions[i] = int(seen)
                op = services.bulk_apply(
                    ids,
                    action,
                    user=request.user,
                    genre=genre,
                    params=params,
                    expected_versions=versions,
                )
                messages.success(request, f"Changed {op.count} artworks. You can undo this below.")
                for conflict in op.conflicts:
                    messages.warning(
                        request, f"Left alone: {conflict['title']}: {conflict['detail']}"
                    )
                return redirect("labelling:bulk")
            if changes is not None:
                context["changes"] = changes
                context["counts"] = services.bulk_plan_counts(changes)
    return render(request, "labelling/bulk.html", context)


@curator_required
@require_POST
def bulk_undo_view(request, op_id):
    op = get_object_or_404(BulkOperation, pk=op_id)
    try:
        restored = services.bulk_undo(op, user=request.user)
        messages.success(request, f"Undone: {restored} artworks have their previous genre again.")
    except ValueError as exc:
        messages.error(request, str(exc))
    return redirect("labelling:bulk")


@curator_required
@require_POST
def revert_view(request, pk: int, label_id: int):
    # A missing artwork or label is a 404; a label of another artwork a 400 (both were 500s).
    artwork = get_object_or_404(Artwork, pk=pk)
    label = get_object_or_404(GenreLabel, pk=label_id)
    if label.artwork_id != artwork.pk:
        message = f"Label #{label.pk} is not a label of artwork #{artwork.pk}."
        return render(request, "400.html", {"message": message}, status=400)
    try:
        version = int(request.POST.get("expected_version", ""))
    except ValueError:
        version = None
    try:
        services.genre_label_revert(pk, label_id, user=request.user, expected_version=version)
        messages.success(request, "Reverted: that label's genre is current again.")
    except services.GenreConflict as exc:
        messages.error(request, str(exc))
    return redirect("catalog:artwork-detail", pk=pk)
