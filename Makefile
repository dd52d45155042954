# Faces: `make run` runs the product on its embedded default, `make test` runs every test.
SHELL := /bin/bash
PYTHON_SYSTEM ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PORT ?= 8000
PG_URL ?= postgres://postgres@127.0.0.1:5432/faces

.PHONY: run test test-sqlite test-postgres install install-test migrate superuser bench clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON_SYSTEM) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

# Debian's Chromium for the browser tests (Playwright cannot download browsers here).
$(VENV)/.browser: $(VENV)/.installed
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	touch $@

install-test: $(VENV)/.installed $(VENV)/.browser

migrate: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0

run: migrate
	@echo "Faces is starting at http://127.0.0.1:$(PORT)/ (web + worker; Ctrl-C stops both)"
	PORT=$(PORT) $(VENV)/bin/honcho start --no-prefix -f Procfile

# Interactive without arguments; `make superuser EMAIL=you@example.com PASSWORD=...` asks nothing.
superuser: migrate
	@if [ -n "$(EMAIL)" ]; then \
	  test -n "$(PASSWORD)" || { echo "PASSWORD=... is needed with EMAIL=..."; exit 2; }; \
	  DJANGO_SUPERUSER_PASSWORD='$(PASSWORD)' $(PY) manage.py createsuperuser --noinput --email '$(EMAIL)' --username '$(firstword $(subst @, ,$(EMAIL)))'; \
	else $(PY) manage.py createsuperuser; fi

test-sqlite: install-test
	$(PY) -m pytest

test-postgres: install-test
	DATABASE_URL=$(PG_URL) $(PY) -m pytest

test: install-test
	$(MAKE) --no-print-directory test-sqlite
	$(MAKE) --no-print-directory test-postgres

bench: install
	$(PY) bench/engine.py

clean:
	rm -rf $(VENV) var
