"""gunicorn hooks (`bin/serve` passes `-c config/gunicorn.conf.py`).

Each worker warms up search (`config.warm`) after loading the application and before it
accepts requests, so no visitor waits for the prompt encoder to load. The worker keeps
telling the arbiter it is alive meanwhile: loading can outlast `--timeout` on a busy host,
and a silent worker would be killed and booted again, forever.
"""

import os
import threading

# Defaults of bin/serve; GUNICORN_CMD_ARGS and command-line options override them.
# Two workers per core, two threads each: the threads of one worker share its GIL, so a
# page waiting behind a search's encoding waits for the whole of it; more processes let
# the kernel share the cores instead (bench/load.py on 2 cores, 50 users: p95 over all
# routes 241 ms with 2 workers x 4 threads, 182 ms with 4 x 2, 207 ms with 6 x 1). Each
# worker loads torch and the search text encoder (~0.55 GB of private memory; the index
# files are mapped and shared): fewer workers on a small host ("--workers N").
workers = (
    2 * len(os.sched_getaffinity(0))
    if hasattr(os, "sched_getaffinity")
    else 2 * (os.cpu_count() or 1)
)
threads = 2
timeout = 60
graceful_timeout = 60
keepalive = 5
accesslog = "-"
# gunicorn's control socket (gunicornc) defaults to one path per user, which two servers on
# one host would share: off.
control_socket_disable = True
# Worker heartbeats in memory, not on a possibly slow disk.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"
# Whose X-Forwarded-* headers gunicorn believes: gunicorn's own FORWARDED_ALLOW_IPS
# variable (default 127.0.0.1,::1), set to the TLS-terminating proxy's address.


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
