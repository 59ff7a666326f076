# soak_gunicorn.py - gunicorn config of the soak run: the eternal glue's own config
# (enable at load, seal in when_ready) plus worker recycling by max_requests.
import os

try:
    from eternal.gunicorn_conf import *  # noqa: F401,F403  preload_app, when_ready (seal), post_fork
    GLUE = True
except ImportError:  # no glue: a stock control run, reported as such by soak.py
    GLUE = False
    preload_app = True

bind = "127.0.0.1:%s" % os.environ.get("SOAK_PORT", "8000")
workers = int(os.environ.get("SOAK_WORKERS", "3"))
worker_class = "sync"
max_requests = int(os.environ.get("SOAK_MAX_REQUESTS", "400"))
max_requests_jitter = int(os.environ.get("SOAK_MAX_REQUESTS_JITTER", "40"))
timeout = 60
graceful_timeout = 10
accesslog = None
errorlog = "-"
loglevel = "info"   # soak.py counts "Booting worker" and worker deaths in this log
