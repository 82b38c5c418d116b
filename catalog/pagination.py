"""API pagination (its own module: DRF imports it while loading its generic views)."""

from rest_framework.pagination import PageNumberPagination


class CatalogPagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500
