"""WSGI entry point: what gunicorn serves (`bin/serve` runs `gunicorn config.wsgi:application`).

Static files are answered by WhiteNoise's middleware inside this application (from
STATIC_ROOT after `collectstatic`), so no separate static file server is needed.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()
