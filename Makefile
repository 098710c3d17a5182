# rtserver: `make run` starts the server, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CLIENTS := tests/clients
BROWSER := tests/browser
CLUSTER := tests/cluster

PREFIX ?= /opt/rtserver
SYSTEMD_DIR ?= /etc/systemd/system
CONFIG_DIR ?= /etc/rtserver

.PHONY: run test install test-deps check-config clean bench soak

$(BIN)/rtserver: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

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

# playwright-core drives Debian's chromium (it downloads no browser of its own).
$(BROWSER)/node_modules/.package-lock.json: $(BROWSER)/package.json $(BROWSER)/package-lock.json
	cd $(BROWSER) && npm ci --no-audit --no-fund

# The cluster tests' Node peers: socket.io 4.8 with @socket.io/redis-adapter 8, @socket.io/redis-emitter 5.
$(CLUSTER)/node_modules/.package-lock.json: $(CLUSTER)/package.json $(CLUSTER)/package-lock.json
	cd $(CLUSTER) && npm ci --no-audit --no-fund

test-deps: $(VENV)/.test-deps $(CLIENTS)/node_modules/.package-lock.json $(BROWSER)/node_modules/.package-lock.json \
	$(CLUSTER)/node_modules/.package-lock.json

test: test-deps
	$(BIN)/python -m pytest -q

# Benchmarks against Node socket.io and python-socketio (not a test): installs the
# peers itself (bench/.venv, bench/peers/node, bench/loadgen) and writes
# bench/results/latest.md. BENCH_RUNS=N, BENCH_QUICK=1 for a smoke run.
bench: $(BIN)/rtserver
	$(PYTHON) bench/run.py

# An hour of realistic traffic against one server (not in CI), sampled every
# 10 s into bench/results/soak.{csv,png,md}. SOAK_SECONDS=N for a shorter run.
soak: test-deps
	test -x bench/.venv/bin/python || $(PYTHON) -m venv bench/.venv
	bench/.venv/bin/pip install --quiet -r bench/requirements.txt
	bench/.venv/bin/python bench/soak.py

# As root: the package in $(PREFIX)/.venv, the units, and $(CONFIG_DIR)/config.toml
# (kept if present). Then: systemctl daemon-reload && systemctl enable --now rtserver.socket
install:
	install -d $(PREFIX) $(CONFIG_DIR)
	$(PYTHON) -m venv $(PREFIX)/.venv
	$(PREFIX)/.venv/bin/pip install --quiet --upgrade pip
	$(PREFIX)/.venv/bin/pip install --quiet .
	install -m 0644 README.md $(PREFIX)/README.md
	install -m 0644 deploy/rtserver.service deploy/rtserver.socket $(SYSTEMD_DIR)/
	test -e $(CONFIG_DIR)/config.toml || install -m 0644 config.toml $(CONFIG_DIR)/config.toml
	$(PREFIX)/.venv/bin/rtserver check-config $(CONFIG_DIR)/config.toml

clean:
	rm -rf $(VENV) $(CLIENTS)/node_modules $(BROWSER)/node_modules $(CLUSTER)/node_modules .pytest_cache
