"""The jobs REST API: `serializers`, `views`, `urls`."""
