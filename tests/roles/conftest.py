"""The catalog of the role tests, built and indexed once for the package."""

from __future__ import annotations

import sys

import pytest
from django.db import transaction
from django.test import override_settings

from retrieval.services import index_rebuild
from tests.roles.matrix import FAST_HASHERS
from tests.roles.world import Catalog, World


@pytest.fixture(scope="package")
def catalog(django_db_setup, django_db_blocker, tmp_path_factory):
    """The catalog and its search index, made once for the package in a transaction that is
    rolled back at the package's end (what `TestCase.setUpTestData` does); each test runs in a
    savepoint inside it. Indexing once keeps 400 tests fast."""
    import torch  # the embedder's; one thread: other suites share this machine's cores

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    index_dir = tmp_path_factory.mktemp("roles-index")
    fast = override_settings(
        PASSWORD_HASHERS=FAST_HASHERS, RETRIEVAL_INDEX_DIR=index_dir, RETRIEVAL_EMBEDDER="minilm"
    )
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        try:
            with fast:
                made = Catalog.make()
                index_rebuild()
        except BaseException:
            outer.__exit__(*sys.exc_info())
            torch.set_num_threads(threads)
            raise
    yield made, index_dir
    with django_db_blocker.unblock():
        transaction.set_rollback(True)
        outer.__exit__(None, None, None)
    torch.set_num_threads(threads)


@pytest.fixture
def world(request, catalog, settings, tmp_path):
    """`world(role)`: the catalog as `role` sees it, with fast settings for one test."""
    made, index_dir = catalog
    settings.PASSWORD_HASHERS = FAST_HASHERS
    settings.RETRIEVAL_INDEX_DIR = index_dir
    settings.LORA_DIR = tmp_path / "loras"
    settings.LORA_CACHE_BUDGET_MB = 1
    settings.GEN_MAX_QUEUED = 10
    return lambda role: World(role, settings, made)
