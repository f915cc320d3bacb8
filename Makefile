# Quick start on a fresh machine: `make run` and `make test`. Both set everything up first
# (a .venv with pinned torch and the project) and skip what is already there.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
MODEL ?= models/drsn_cw_cwru.pt
# Debian packages the tests use (a real broker, promtool); installed only when a command is missing.
APT_PACKAGES := mosquitto mosquitto-clients prometheus
# PortAudio for sounddevice, and what ../shared/tools/virtual-soundcard.sh installs (a PulseAudio null
# sink recorded through ALSA's pulse plugin); installed only when a package is missing.
AUDIO_PACKAGES := libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins sox
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SYSTEM_STAMP := $(VENV)/.system-stamp
# The sound-card tests record from that virtual sound card. It keeps running between runs and is
# started only when it does not answer; these two variables point a recording process at it.
VIRTUAL_SOUNDCARD ?= ../shared/tools/virtual-soundcard.sh
AUDIO_DIR ?= /tmp/ci-audio
AUDIO_ENV := XDG_RUNTIME_DIR=$(AUDIO_DIR)/runtime PULSE_SERVER=unix:$(AUDIO_DIR)/runtime/pulse/native

.PHONY: setup system soundcard run test lint report clean

setup: $(STAMP)

system: $(SYSTEM_STAMP)

$(SYSTEM_STAMP): $(STAMP) Makefile
	@missing=""; \
	{ command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; } || missing="$$missing mosquitto mosquitto-clients"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	for pkg in $(AUDIO_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing $$missing"; \
	  echo "man-db man-db/auto-update boolean false" | $(SUDO) debconf-set-selections; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	touch $(SYSTEM_STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[train,dev,audio]"
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m edge_agent run --config config.toml

soundcard: $(SYSTEM_STAMP)
	@if env $(AUDIO_ENV) pactl info >/dev/null 2>&1; then \
	  echo "virtual sound card already running ($(AUDIO_DIR))"; \
	elif [ -f $(VIRTUAL_SOUNDCARD) ]; then \
	  AUDIO_DIR=$(AUDIO_DIR) bash $(VIRTUAL_SOUNDCARD); \
	else \
	  echo "no $(VIRTUAL_SOUNDCARD): the sound-card tests need a running PulseAudio server or are skipped"; \
	fi

test: $(STAMP) $(SYSTEM_STAMP) soundcard
	$(PY) -m ruff check edge_agent tests benchmarks
	env $(AUDIO_ENV) $(PY) -m pytest -q

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
