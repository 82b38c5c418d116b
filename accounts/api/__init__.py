"""The API token endpoint: `serializers`, `views`, `urls`."""
