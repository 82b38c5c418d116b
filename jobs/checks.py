"""System checks of the job machinery (`manage.py check`, run by `bin/serve` too)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register


def task_time_limits() -> dict[str, float | None]:
    """Every project task's hard time limit (None: unlimited), as Celery will apply it."""
    from django.utils.module_loading import autodiscover_modules

    from celery_app import app

    autodiscover_modules("tasks")  # every app's tasks module, as the worker's autodiscovery
    return {
        name: task.time_limit
        for name, task in sorted(app.tasks.items())
        if not name.startswith("celery.")
    }


@register()
def visibility_timeout_exceeds_task_limits(app_configs=None, **kwargs) -> list[Error]:
    """Redis hands a task that is still running to a second worker once its visibility
    timeout passes: it must exceed the longest task, or long runs are delivered twice."""
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {}
    timeout = options.get("visibility_timeout")
    if timeout is None:
        return []  # a broker without one (the filesystem transport)
    limits = task_time_limits()
    too_long = {n: t for n, t in limits.items() if t is None or t >= timeout}
    if not too_long:
        return []
    return [
        Error(
            f"The broker's visibility timeout ({timeout} s) does not exceed the time limit of "
            + ", ".join(f"{n} ({t or 'none'})" for n, t in too_long.items()),
            hint="Raise CELERY_VISIBILITY_TIMEOUT (or lower the *_TIME_LIMIT constants; both in "
            "config/settings.py's tuning block): a task still running would be started again "
            "by another worker.",
            id="jobs.E001",
        )
    ]
