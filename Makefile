# Quick start on a fresh machine: `make run` and `make test`. Both set everything up first
# (a .venv with pinned torch and the project) and skip what is already there.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
MODEL ?= models/drsn_cw_cwru.pt
# Debian packages the tests use (a real broker, promtool, systemd-analyze for the unit's checks, g++ for the op library);
# installed only when a command is missing.
APT_PACKAGES := mosquitto mosquitto-clients prometheus systemd g++
# PortAudio for sounddevice, and what ../shared/tools/virtual-soundcard.sh installs (a PulseAudio null
# sink recorded through ALSA's pulse plugin); installed only when a package is missing.
AUDIO_PACKAGES := libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins sox
# jemalloc, which the systemd unit preloads (less memory under load than glibc's malloc; tests check it).
LIB_PACKAGES := libjemalloc2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SYSTEM_STAMP := $(VENV)/.system-stamp
# The sound-card tests record from that virtual sound card. It keeps running between runs and is
# started only when it does not answer; these two variables point a recording process at it.
VIRTUAL_SOUNDCARD ?= ../shared/tools/virtual-soundcard.sh
AUDIO_DIR ?= /tmp/ci-audio
AUDIO_ENV := XDG_RUNTIME_DIR=$(AUDIO_DIR)/runtime PULSE_SERVER=unix:$(AUDIO_DIR)/runtime/pulse/native

.PHONY: setup system soundcard run test lint report clean install uninstall kernels

setup: $(STAMP) kernels

# The edge_agent op library (edge_agent/kernels: the fused int8 model files call its ops); rebuilt only
# when a source is newer. Without it (no compiler) the agent runs the standard int8 files instead.
KERNELS_LIB := edge_agent/kernels/libedge_agent_ops.so.1
kernels: $(KERNELS_LIB)

$(KERNELS_LIB): $(wildcard edge_agent/kernels/*.cpp edge_agent/kernels/*.inc)
	$(PY) -m edge_agent.kernels.build

system: $(SYSTEM_STAMP)

$(SYSTEM_STAMP): $(STAMP) Makefile
	@missing=""; \
	{ command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; } || missing="$$missing mosquitto mosquitto-clients"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v g++ >/dev/null || missing="$$missing g++"; \
	for pkg in $(AUDIO_PACKAGES) $(LIB_PACKAGES); do \
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

run: $(STAMP) kernels
	$(PY) -m edge_agent run --config config.toml

soundcard: $(SYSTEM_STAMP)
	@if env $(AUDIO_ENV) pactl info >/dev/null 2>&1; then \
	  echo "virtual sound card already running ($(AUDIO_DIR))"; \
	elif [ -f $(VIRTUAL_SOUNDCARD) ]; then \
	  AUDIO_DIR=$(AUDIO_DIR) bash $(VIRTUAL_SOUNDCARD); \
	else \
	  echo "no $(VIRTUAL_SOUNDCARD): the sound-card tests need a running PulseAudio server or are skipped"; \
	fi

test: $(STAMP) $(SYSTEM_STAMP) soundcard kernels
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
	rm -rf $(VENV) .pytest_cache .ruff_cache $(KERNELS_LIB)

# ---------------------------------------------------------------- install as a systemd service
# `make install` (as root): a venv with the agent under $(PREFIX), the models, the unit, and
# $(SYSCONFDIR)/config.toml only when there is none (an edited config is never overwritten; the
# newest default is always written beside it as config.toml.default). Idempotent; DESTDIR stages
# it into another root. `make uninstall` removes all of it but the edited config.toml.
PREFIX ?= /opt/edge-agent
SYSCONFDIR ?= /etc/edge-agent
UNITDIR ?= /etc/systemd/system
DEST_VENV = $(DESTDIR)$(PREFIX)/venv
# What pip puts into that venv; tests point these at something cheaper (no torch download).
INSTALL_REQUIREMENTS ?= torch==2.13.0 '.[audio]'
INSTALL_PIP_ARGS ?= --quiet --disable-pip-version-check
# Plain PyPI serves x86_64 Linux torch with CUDA (gigabytes); a gateway wants the CPU build:
# make install TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu (empty: pip's own configuration).
TORCH_INDEX_URL ?=
INSTALL_VENV_ARGS ?=
PATHS_FOR_PREFIX = sed -e 's|/opt/edge-agent|$(PREFIX)|g' -e 's|/etc/edge-agent|$(SYSCONFDIR)|g'

install:
	@case "$(PREFIX)" in /?*) ;; *) echo "PREFIX must be an absolute path other than /, got '$(PREFIX)'"; exit 2;; esac
	test -x $(DEST_VENV)/bin/python || $(PYTHON) -m venv $(INSTALL_VENV_ARGS) $(DEST_VENV)
	$(DEST_VENV)/bin/python -m pip install $(INSTALL_PIP_ARGS) $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL)) $(INSTALL_REQUIREMENTS)
	@# a staged install (DESTDIR): pip wrote the staging path into script shebangs; the unit runs
	@# `python -m edge_agent`, which needs none of them, but the scripts should work once moved too
	@if [ -n "$(DESTDIR)" ]; then \
	  for f in $(DEST_VENV)/bin/*; do \
	    [ -f "$$f" ] && [ ! -L "$$f" ] && head -c 2 "$$f" | grep -q '#!' && sed -i '1s|^#!$(DESTDIR)/|#!/|' "$$f"; \
	  done; true; \
	fi
	@# the op library of the fused model files, built against the venv's torch; without it (no compiler,
	@# no torch) a fused file falls back to its standard int8 file, with a warning in the log
	$(DEST_VENV)/bin/python -m edge_agent.kernels.build || echo "op library not built: fused model files will run their standard int8 files"
	install -d $(DESTDIR)$(PREFIX)/models $(DESTDIR)$(SYSCONFDIR) $(DESTDIR)$(UNITDIR)
	install -m 0644 models/*.pt models/README.md $(DESTDIR)$(PREFIX)/models/
	install -m 0644 README.md $(DESTDIR)$(PREFIX)/README.md
	install -m 0644 config.toml $(DESTDIR)$(PREFIX)/config.example.toml
	$(PATHS_FOR_PREFIX) systemd/config.toml > $(DESTDIR)$(SYSCONFDIR)/config.toml.default
	chmod 0644 $(DESTDIR)$(SYSCONFDIR)/config.toml.default
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/config.toml ]; then \
	  echo "kept $(SYSCONFDIR)/config.toml; the newest default is $(SYSCONFDIR)/config.toml.default"; \
	else \
	  install -m 0644 $(DESTDIR)$(SYSCONFDIR)/config.toml.default $(DESTDIR)$(SYSCONFDIR)/config.toml; \
	  echo "wrote $(SYSCONFDIR)/config.toml"; \
	fi
	@# the allocator the unit preloads; where it cannot be installed the agent runs glibc's malloc and says so
	@if [ -z "$(DESTDIR)" ] && command -v apt-get >/dev/null && \
	  ! dpkg-query -W -f='$${Status}' $(LIB_PACKAGES) 2>/dev/null | grep -q "ok installed"; then \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(LIB_PACKAGES) || \
	  echo "$(LIB_PACKAGES) not installed: the agent will run glibc's malloc (more memory under load)"; \
	fi
	$(PATHS_FOR_PREFIX) systemd/edge-agent.service > $(DESTDIR)$(UNITDIR)/edge-agent.service
	@# the template (one process per core: edge-agent@0, edge-agent@1, ...) is made from the plain unit
	$(PATHS_FOR_PREFIX) systemd/edge-agent.service | sh systemd/instance-unit.sh > $(DESTDIR)$(UNITDIR)/edge-agent@.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/edge-agent.service $(DESTDIR)$(UNITDIR)/edge-agent@.service
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "installed; edit $(SYSCONFDIR)/config.toml, then: systemctl enable --now edge-agent"
	@echo "(or one process per core, with instances = N in the mqtt sources: systemctl enable --now edge-agent@0 edge-agent@1)"

uninstall:
	@case "$(PREFIX)" in /?*) ;; *) echo "PREFIX must be an absolute path other than /, got '$(PREFIX)'"; exit 2;; esac
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
	  systemctl disable --now edge-agent || true; \
	  for unit in $$(systemctl list-units --all --plain --no-legend 'edge-agent@*' | cut -d' ' -f1); do \
	    systemctl disable --now "$$unit" || true; \
	  done; \
	fi
	rm -f $(DESTDIR)$(UNITDIR)/edge-agent.service $(DESTDIR)$(UNITDIR)/edge-agent@.service
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	rm -rf $(DEST_VENV) $(DESTDIR)$(PREFIX)/models
	rm -f $(DESTDIR)$(PREFIX)/README.md $(DESTDIR)$(PREFIX)/config.example.toml $(DESTDIR)$(SYSCONFDIR)/config.toml.default
	-rmdir $(DESTDIR)$(PREFIX) 2>/dev/null
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/config.toml ]; then echo "kept $(SYSCONFDIR)/config.toml (remove it by hand)"; fi
