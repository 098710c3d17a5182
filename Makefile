# rtserver: `make run` starts the server, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CLIENTS := tests/clients

.PHONY: run test install test-deps check-config clean

$(BIN)/rtserver: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

install: $(BIN)/rtserver

run: $(BIN)/rtserver
	$(BIN)/rtserver serve --config config.toml

check-config: $(BIN)/rtserver
	$(BIN)/rtserver check-config config.toml

$(VENV)/.test-deps: pyproject.toml $(BIN)/rtserver
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(CLIENTS)/node_modules/.package-lock.json: $(CLIENTS)/package.json $(CLIENTS)/package-lock.json
	@command -v node >/dev/null || { echo "node and npm are required: apt-get install nodejs npm"; exit 1; }
	cd $(CLIENTS) && npm ci --no-audit --no-fund

test-deps: $(VENV)/.test-deps $(CLIENTS)/node_modules/.package-lock.json

test: test-deps
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(CLIENTS)/node_modules .pytest_cache
