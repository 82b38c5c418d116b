"""Template context shared by every page."""

from django.http import HttpRequest

from catalog import selectors


def catalog_banner(request: HttpRequest) -> dict:
    """Tell every page whether synthetic demo paintings are in the catalog."""
    return {"catalog_has_synthetic": selectors.catalog_has_synthetic()}
