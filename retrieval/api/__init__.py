"""The retrieval API: serializers, views, urls (config/urls.py includes urls)."""
