"""API pagination (its own module: DRF imports it while loading its generic views)."""

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination


class CatalogPagination(PageNumberPagination):
    """Page numbers with a client-chosen `page_size` of 1 to `max_page_size`.

    DRF would quietly serve the default size for a bad `page_size`; here it is a 400
    saying why, like every other out-of-bounds value.
    """

    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None or raw == "":
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            raise ValidationError({"page_size": ["must be an integer"]}) from None
        if not 1 <= size <= self.max_page_size:
            raise ValidationError({"page_size": [f"must be between 1 and {self.max_page_size}"]})
        return size

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
            elif parameter["name"] == self.page_query_param:
                parameter["schema"]["minimum"] = 1
        return parameters
