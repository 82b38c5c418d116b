"""Faults, each with a test that shows nothing the user asked for is lost (issue #6).

1. A Celery worker (prefork, as `make run` starts it) SIGKILLed between two phases of a
   generation, then during LoRA training, while it loads Stable Diffusion and while it
   renders: a restarted worker resumes the job within seconds, on the embedded default
   (filesystem transport) and on Redis, with executions counted (issue #15). Cancel ends
   at once a job whose worker is gone. Plus: copies of a phase message run it once; the
   re-send pass picks each unsent job once; a finished job's late message does nothing.
2. The Redis broker restarting while a job runs and another waits in it, and the broker
   down while the web side enqueues; Redis restarting during a labelling run.
3. `manage.py build_index` SIGKILLed while it writes the new index version, and an index
   rebuild job whose worker is SIGKILLed (the next request resumes it).
4. Curators correcting one artwork at the same moment (one database connection each).
5. The database restarting under a running web server (gunicorn, a real process), and the
   503 answers of `config.middleware` on their own.

Workers, commands and the web server are real subprocesses. A fault is injected at one
exact point by `FAULT_RUNNER`, a wrapper that patches one function of the subprocess to
SIGKILL (or pause) it there, so every test waits on states it can see (polled with a
timeout), never on timing luck. Redis is a private server on a free port, started and
restarted by the tests (append-only file on, as a production broker must have).
"""
