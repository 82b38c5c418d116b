"""The real-size tier (`make test-real-size`): every model role at its published size.

Runs only when MYTHRAGEN_REAL_SIZE_DIR names a folder built by
`python manage.py build_real_size_models DIR`; `make test` skips it (about 15 minutes and
up to 12 GB of memory on a 2-core machine).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_collection_modifyitems(config, items):
    folder = os.environ.get("MYTHRAGEN_REAL_SIZE_DIR")
    if folder and Path(folder).is_dir():
        return
    skip = pytest.mark.skip(
        reason="real-size tier: set MYTHRAGEN_REAL_SIZE_DIR (or run `make test-real-size`)"
    )
    here = Path(__file__).parent
    for item in items:
        if Path(item.fspath).is_relative_to(here):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def real_size_dir() -> Path:
    return Path(os.environ["MYTHRAGEN_REAL_SIZE_DIR"]).resolve()
