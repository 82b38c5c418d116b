"""The generation REST API: `serializers`, `views`, `urls`."""
