"""WSGI entry point: what gunicorn serves (`bin/serve` runs `gunicorn config.wsgi:application`).

Static files are answered by WhiteNoise's middleware inside this application (from
STATIC_ROOT after `collectstatic`), so no separate static file server is needed.
`runserver` (`make run`) loads this module in the process that serves, just before it
listens: there search is warmed up first (`config.warm`); gunicorn workers warm up in
their `post_worker_init` hook (`config/gunicorn.conf.py`).
"""

import os
import sys

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

if len(sys.argv) > 1 and sys.argv[1] == "runserver":
    from config.warm import warm_start

    warm_start("runserver")
