import pytest

from retrieval import services


@pytest.fixture
def indexed_demo(imported_demo):
    """The demo catalog, embedded with the offline MiniLM model and indexed."""
    report = services.index_rebuild()
    return report
