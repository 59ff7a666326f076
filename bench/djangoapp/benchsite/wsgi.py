# WSGI entry point that gunicorn preloads in the master (preload_app = True).
# Nothing benchmark-specific here: modes are applied by gunicorn_conf.py hooks.
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")
application = get_wsgi_application()
