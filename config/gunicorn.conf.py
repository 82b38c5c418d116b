"""gunicorn hooks (`bin/serve` passes `-c config/gunicorn.conf.py`).

Each worker warms up search (`config.warm`) after loading the application and before it
accepts requests, so no visitor waits for the prompt encoder to load. The worker keeps
telling the arbiter it is alive meanwhile: loading can outlast `--timeout` on a busy host,
and a silent worker would be killed and booted again, forever.
"""

import threading


def post_worker_init(worker):
    from config.warm import warm_start

    done = threading.Event()

    def heartbeat():
        while not done.wait(2.0):
            worker.notify()

    beat = threading.Thread(target=heartbeat, name="warm-start-heartbeat", daemon=True)
    beat.start()
    try:
        warm_start("gunicorn worker")
    finally:
        done.set()
        beat.join()
