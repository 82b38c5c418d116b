"""System checks of the catalog."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Tags, Warning, register

PER_PROCESS_BACKENDS = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


@register(Tags.caches, deploy=True)
def cache_shared_by_every_process(app_configs=None, **kwargs) -> list[Warning]:
    """Production serves from several processes (gunicorn workers, hosts): the label
    snapshot's token, the catalog counts and the sign-in throttle's counts must live in one
    cache they all share, or each worker keeps its own (stale labels for up to a minute,
    throttling per worker). `make run` (one process) uses local memory on purpose."""
    backend = settings.CACHES["default"]["BACKEND"]
    if backend not in PER_PROCESS_BACKENDS:
        return []
    return [
        Warning(
            f"The default cache ({backend.rsplit('.', 1)[-1]}) is private to each process.",
            hint="Set CACHE_URL=redis://host:6379/2 so every web worker and host shares the "
            "label snapshot's token, the catalog counts and the sign-in throttle.",
            id="catalog.W001",
        )
    ]
