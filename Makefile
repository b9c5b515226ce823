# Fleet: `make run` serves the dashboard on SQLite with a demo fleet;
# `make serve` serves it in production (gunicorn; configure through the environment);
# `make test` runs every test (SQLite and PostgreSQL).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run serve test install lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	./scripts/run.sh

# Production: gunicorn on FLEET_BIND with FLEET_WORKERS workers (README "Production").
serve: $(STAMP)
	./scripts/serve.sh

test: $(STAMP)
	./scripts/test.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DJANGO_SECRET_KEY=$${DJANGO_SECRET_KEY:-lint-only} $(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(VENV)/bin/python bench/append.py

clean:
	rm -rf $(VENV) var staticfiles
