"""The API's JSON renderer: DRF's, with server paths scrubbed (see config/public.py)."""

from rest_framework import renderers

from config.public import scrub_bytes


class JSONRenderer(renderers.JSONRenderer):
    """Every API answer (and the browsable API's, which renders through it) without a
    server path: model folders, LoRA files and fingerprints read as their last component."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return scrub_bytes(super().render(data, accepted_media_type, renderer_context))
