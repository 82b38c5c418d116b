"""The catalog's REST API: `serializers` (shared by the other apps' APIs), `filters`
(query-parameter schemas derived from `catalog.filters`), `views`, `urls`."""
