"""The retrieval REST API: `serializers`, `views`, `urls`."""

# `SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]` names this path (config/settings.py).
from retrieval.api.serializers import SLOT_CHOICES

__all__ = ["SLOT_CHOICES"]
