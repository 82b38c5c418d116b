# MythraGen: `make run` starts the app on its embedded default; `make test` runs the tests.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

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
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e '.[ml,dev]'
	mkdir -p var
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
