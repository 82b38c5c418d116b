from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "catalog"
    verbose_name = "Catalog"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        import config.openapi  # noqa: F401 (registers the schema's session + CSRF description)
        from catalog import checks  # noqa: F401 (registers the system checks)
        from catalog.models import Artist, Genre, Style
        from catalog.selectors import labels_changed

        for model in (Artist, Style, Genre):
            post_save.connect(labels_changed, sender=model, dispatch_uid=f"labels-{model}")
            post_delete.connect(labels_changed, sender=model, dispatch_uid=f"labels-del-{model}")
