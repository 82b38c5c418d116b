"""A warm start: serving processes load the search's prompt encoder before they serve.

Loading the encoder (torch, sentence-transformers, the ONNX session) takes seconds, 15-25 s
on a busy 2-core machine; done lazily, the first visitor's search paid it with no
indicator. `warm_start` runs one search (`retrieval.selectors.search_warm_up`) and says
when search is ready. Called only where requests are served: by `config/wsgi.py` under
`runserver` (before it listens) and by gunicorn's `post_worker_init` hook
(`config/gunicorn.conf.py`, before a worker accepts requests); never by management
commands or tests, so the URLconf still imports no ML library (tests/test_config.py).
WARM_START=false turns it off.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("mythragen.warm")


def warm_start(process: str) -> dict | None:
    """Warm up search in this serving process; never raises (a cold search still works)."""
    from django.conf import settings

    if not settings.WARM_START:
        return None
    from retrieval.selectors import search_warm_up

    try:
        report = search_warm_up()
    except Exception as exc:  # noqa: BLE001 - the first search will say what is wrong
        logger.warning(
            "%s %d: search not warmed up (%s); the first search loads it", process, os.getpid(), exc
        )
        return None
    logger.info(
        "%s %d: search ready (prompt encoder loaded in %.1f s; index %s)",
        process,
        os.getpid(),
        report["seconds"],
        report["index"],
    )
    return report
