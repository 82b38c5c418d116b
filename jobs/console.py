"""A progress bar on stderr for management commands that run a service in the foreground
(the same `progress(done, total, stage)` callback a Celery job's reporter gives)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress_bar(
    *, disabled: bool, unit: str = "it", stage_width: int | None = 0, total: int = 0
) -> Iterator[Callable[..., None]]:
    """Yield a `progress(done, total, stage="")` callback drawing a tqdm bar, closed on exit.

    `disabled`: no bar (`--no-progress`); otherwise tqdm draws only on a terminal.
    `stage_width`: the stage is shown as the bar's description, cut to that many
    characters (None: whole; 0: not shown)."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit=unit, disable=disabled or None, file=sys.stderr)

    def progress(done: int, total: int, stage: str = "") -> None:
        bar.total, bar.n = total, done
        if stage_width != 0:
            bar.set_description(stage[:stage_width], refresh=False)
        bar.refresh()

    try:
        yield progress
    finally:
        bar.close()
