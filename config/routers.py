"""Database router: pgvector-only tables exist on PostgreSQL alone."""

from django.db import connections

POSTGRES_ONLY = {("retrieval", "artworkvectormirror")}


class PostgresOnlyRouter:
    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if (app_label, model_name) in POSTGRES_ONLY:
            return connections[db].vendor == "postgresql"
        return None
