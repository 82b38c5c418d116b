"""Generation pages: the request form, a generation's live page, the gallery, downloads."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from catalog.selectors import example_prompt
from generation import selectors, services
from generation.forms import GenerationForm


@login_required
def generate_view(request):
    form = GenerationForm(request.POST or None, example=example_prompt())
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                generation = services.generation_request(request.user, form.to_params())
            except services.GenerationLimitError as exc:
                form.add_service_errors(exc.errors)
                status = 429
            except services.GenerationRequestError as exc:
                form.add_service_errors(exc.errors)
            else:
                return redirect("generation:detail", pk=generation.pk)
    return render(
        request,
        "generation/generate.html",
        {
            "form": form,
            "recent": selectors.user_generations(request.user),
            "model": selectors.model_status(),
        },
        status=status,
    )


def _context(request, generation) -> dict:
    return {
        "generation": generation,
        "job": generation.job,
        "references": selectors.generation_references(generation),
        "can_control": selectors.generation_can_control(request.user, generation),
        "model": selectors.model_status(),
        "withheld": selectors.generation_withheld(request.user, generation),
        "flag_notice": selectors.generation_flag_notice(request.user, generation),
        "safety_note": selectors.generation_safety_note(generation),
        "reading": selectors.generation_reading(generation),
        "provenance_text": selectors.generation_provenance_text(generation),
    }


def generation_detail_view(request, pk: int):
    generation = get_object_or_404(selectors.generation_visible(request.user), pk=pk)
    return render(request, "generation/detail.html", _context(request, generation))


def generation_result_fragment(request, pk: int):
    """The result part of the page, fetched by the page's script when the job finishes."""
    generation = get_object_or_404(selectors.generation_visible(request.user), pk=pk)
    return render(request, "generation/_result.html", _context(request, generation))


def _controlled(request, pk: int):
    generation = get_object_or_404(selectors.generation_visible(request.user), pk=pk)
    if not selectors.generation_can_control(request.user, generation):
        raise Http404("not your generation")
    return generation


@login_required
@require_POST
def generation_cancel_view(request, pk: int):
    services.generation_cancel(_controlled(request, pk))
    messages.info(request, "Cancellation requested.")
    return redirect("generation:detail", pk=pk)


@login_required
@require_POST
def generation_retry_view(request, pk: int):
    try:
        services.generation_retry(_controlled(request, pk), request.user)
    except services.GenerationRequestError as exc:
        messages.error(request, str(exc))
    return redirect("generation:detail", pk=pk)


@login_required
@require_POST
def generation_rerun_view(request, pk: int):
    try:
        rerun = services.generation_rerun(_controlled(request, pk), request.user)
    except services.GenerationRequestError as exc:
        messages.error(request, str(exc))
        return redirect("generation:detail", pk=pk)
    return redirect("generation:detail", pk=rerun.pk)


def gallery_view(request):
    page = Paginator(selectors.gallery_list(request.user), 24).get_page(request.GET.get("page"))
    for generation in page:
        generation.withheld = selectors.generation_withheld(request.user, generation)
        generation.flag_notice = selectors.generation_flag_notice(request.user, generation)
    return render(
        request, "generation/gallery.html", {"page": page, "model": selectors.model_status()}
    )


@login_required
def lora_download_view(request, key: str):
    entry = get_object_or_404(selectors.lora_visible(request.user), key=key)
    fmt = request.GET.get("as", "diffusers")
    try:
        path = services.lora_export(entry, fmt)
    except services.GenerationRequestError as exc:
        raise Http404(str(exc)) from exc
    return FileResponse(
        open(path, "rb"),  # noqa: SIM115 - FileResponse closes it
        as_attachment=True,
        filename=services.lora_download_name(entry, fmt),
    )


def generation_image_view(request, name: str):
    """A generation's image file (`media/generations/...`), if the visitor may see it
    (`selectors.generation_image_for`); a 404 otherwise, as for a file that is not there."""
    generation = selectors.generation_image_for(request.user, name)
    if generation is None:
        raise Http404("no such image")
    try:
        image = generation.image.storage.open(name, "rb")
    except FileNotFoundError as exc:
        raise Http404("no such image") from exc
    response = FileResponse(image, content_type="image/png")
    # Browsers and proxies may keep what anyone may see; the rest stays private.
    public = selectors.generation_image_for(None, name) is not None
    response["Cache-Control"] = "public, max-age=3600" if public else "private, no-store"
    return response
