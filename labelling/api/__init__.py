"""The curators' REST API: `serializers`, `views`, `urls`."""
