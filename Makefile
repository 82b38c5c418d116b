# MythraGen: `make run` starts the app on its embedded default; `make test` runs the tests.
# The first Python 3.11-3.13 found (3.11 first: the version every figure was measured on);
# `make PYTHON=python3.13 run` picks one. An existing .venv is kept whatever made it.
ifeq ($(origin PYTHON), undefined)
PYTHON := $(shell for p in python3.11 python3.12 python3.13 python3; do \
  command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 14))' 2>/dev/null \
  && { echo $$p; break; }; done)
endif
# torch's CPU wheels (a plain `pip install torch` on Linux pulls the multi-GB CUDA build);
# empty: the package index pip is configured with.
TORCH_INDEX ?=
VENV := .venv
# GPU=1 (a CUDA host): the `gpu` extra, faiss-gpu instead of faiss-cpu (both are the module
# `faiss`: the other one is uninstalled first, never both), and torch's default wheel from
# TORCH_INDEX or PyPI (CUDA on Linux). Searches then run their content scan on the GPU
# (retrieval/ml/index/gpu.py). Switching GPU on an existing .venv reinstalls.
GPU ?=
ML_EXTRA := $(if $(GPU),gpu,ml)
STAMP := $(VENV)/.installed$(if $(GPU),-gpu)

.PHONY: run test test-real-size install lint format bench-import clean

run: install
	bin/run-demo

test: install
	bin/test

# Every model role at its published size (random weights): ~15 GB of disk, up to 12 GB of
# memory, about 15-25 minutes on 2 cores. Not part of `make test` / CI.
test-real-size: install
	bin/test-real-size

install: $(STAMP)

# torch first, from its CPU wheel: otherwise a dependency pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	@test -d $(VENV) || test -n "$(PYTHON)" || { echo "Python 3.11, 3.12 or 3.13 is required (set PYTHON=...)"; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(VENV)/bin/pip uninstall -q -y $(if $(GPU),faiss-cpu,faiss-gpu faiss-gpu-cu12 faiss-gpu-cu11)
	$(VENV)/bin/pip install -q -e '.[$(ML_EXTRA),dev]'
	mkdir -p var
	rm -f $(VENV)/.installed $(VENV)/.installed-gpu
	touch $(STAMP)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench-import: install
	$(VENV)/bin/python bench/import_wikiart.py

# Production-style web server: migrate, collectstatic, gunicorn + WhiteNoise (bin/serve).
.PHONY: serve bench-load
serve: install
	bin/serve

# Load benchmark of the served app on PostgreSQL (bench/load.py --help for options).
bench-load: install
	$(VENV)/bin/python bench/load.py $(ARGS)

clean:
	rm -rf var/media var/broker var/celery-results var/test_db_*.sqlite3
