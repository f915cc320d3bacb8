# Quick start on a fresh machine: `make run` and `make test`. Both set everything up first
# (a .venv with pinned torch and the project) and skip what is already there.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
MODEL ?= models/drsn_cw_cwru.pt
# Debian packages the tests use (a real broker, promtool); installed only when a command is missing.
APT_PACKAGES := mosquitto mosquitto-clients prometheus
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SYSTEM_STAMP := $(VENV)/.system-stamp

.PHONY: setup system run test lint report clean

setup: $(STAMP)

system: $(SYSTEM_STAMP)

$(SYSTEM_STAMP): $(STAMP)
	@missing=""; \
	{ command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; } || missing="$$missing mosquitto mosquitto-clients"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  echo "installing $$missing"; \
	  echo "man-db man-db/auto-update boolean false" | $(SUDO) debconf-set-selections; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	touch $(SYSTEM_STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[train,dev]"
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m edge_agent run --config config.toml

test: $(STAMP) $(SYSTEM_STAMP)
	$(PY) -m ruff check edge_agent tests benchmarks
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check edge_agent tests benchmarks
	$(PY) -m ruff format --check edge_agent tests benchmarks

# Trains the missing runs of the evaluation sweep (hours on 2 cores; resumable), then
# rewrites docs/results from every run and the shipped model.
report: $(STAMP)
	$(PY) -m edge_agent sweep --runs runs --jobs 2
	$(PY) -m edge_agent report --runs runs --out docs/results --model $(MODEL)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
