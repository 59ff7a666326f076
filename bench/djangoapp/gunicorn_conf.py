# gunicorn 20.1 config of the Django workload: preload_app, sync workers, loopback only.
# Hooks apply the benchmark mode: early() at config load, before_fork() in when_ready, gc.enable() after fork.
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import modes  # noqa: E402  (bench/modes.py)

# Runs before the app is preloaded: gc.disable() for the gc-freeze recipe, eternal hook check.
modes.early()

bind = "127.0.0.1:%s" % os.environ.get("FORKMEM_PORT", "8000")
workers = int(os.environ.get("FORKMEM_WORKERS", "4"))
worker_class = "sync"
preload_app = True
timeout = 120
graceful_timeout = 5
accesslog = None
errorlog = "-"
loglevel = "warning"


def when_ready(server):
    # Called in the master after the preload, before the first worker is forked.
    if os.environ.get("FORKMEM_DUMP_OBJECTS"):
        import cowmap
        cowmap.install_dump_handler()
    # gc-freeze/immortal: gc.freeze() here; eternal modes (ETERNAL_SEAL=manual): eternal.seal(mode=...)
    # here, i.e. `import eternal; eternal.seal(mode="strict")`, so that every worker inherits a sealed tier.
    facts, _ = modes.before_fork()
    modes.write_ready(dict(facts, modules=len(sys.modules)))


def post_fork(server, worker):
    modes.after_fork_child()
