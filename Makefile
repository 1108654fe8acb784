# BackHug firmware: host environment, the three test tiers, benchmarks and the simulator.
# Needs only python3 (3.11+), node (20+) and make; everything else is installed locally
# (.venv from pyproject.toml, node_modules from package-lock.json).

SHELL := bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv node_modules test lint tier1 tier2 tier3 tier4 vdev mpy bench sim clean distclean bundle flash eol

help:
	@echo "make sim [ARGS=...]  run the simulator (python -m backhug_host.sim)"
	@echo "make test            lint + tier 1 (CPython) + tier 2 (MicroPython wasm) + tier 3 (mpy-cross)"
	@echo "                     + tier 4 (the virtual device: firmware on MicroPython's unix port)"
	@echo "make lint            ruff check"
	@echo "make mpy             compile firmware/ and boards/ into build/mpy/"
	@echo "make bench           benchmarks -> build/bench.json"
	@echo "make bundle [BOARD=backhug_v3] [ARGS=...]  signed update bundle -> build/bundle/ (default --dev)"
	@echo "make flash PORT=/dev/ttyACM0 BOARD=devkit SERIAL=... [HARDWARE=...] [PUBLIC_KEY=...]"
	@echo "                     provision a device with mpremote (bundle, boot.py, packages, identity)"
	@echo "make eol PORT=/dev/ttyACM0 [SERIAL=...] | make eol SIM=1   end-of-line test -> build/eol/"
	@echo "make venv            create .venv (also done on demand)"
	@echo "make clean           remove build outputs; distclean also removes .venv and node_modules"

# --- environments -------------------------------------------------------------------------------

venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "need Python 3.11+, found " + sys.version.split()[0])'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

node_modules: $(NODE_STAMP)

$(NODE_STAMP): package.json package-lock.json
	@node -e 'const v = +process.versions.node.split(".")[0]; if (v < 20) { console.error("need node 20+, found " + process.version); process.exit(1) }'
	npm ci --no-audit --no-fund
	touch $@

# --- tests --------------------------------------------------------------------------------------
# `make test` runs every stage even when one fails, then prints one line per stage and fails if
# any stage failed. Logs are kept in build/test/. Tier 4 (the virtual device: two processes in
# lockstep, about one core) runs beside tiers 1-3 (one core each, in turn) and its log is
# printed when it ends: the two cores stay busy and the suite takes the longer of the two.

test: $(VENV_STAMP) $(NODE_STAMP)
	@mkdir -p build/test; rm -f build/test/*.rc; status=0; \
	stage() { local name=$$1; shift; echo "== $$name"; \
	  if "$$@" 2>&1 | tee build/test/$$name.log; then echo ok > build/test/$$name.rc; \
	  else echo FAILED > build/test/$$name.rc; status=1; fi; }; \
	set -o pipefail; \
	stage lint $(PY) -m ruff check --output-format=concise .; \
	( if $(PY) -m backhug_host.vdev.build && $(PY) -m pytest -q -p no:cacheprovider tests/vdev; \
	  then echo ok > build/test/tier4.rc; else echo FAILED > build/test/tier4.rc; fi \
	) > build/test/tier4.log 2>&1 & \
	tier4=$$!; \
	stage tier1 $(PY) -m pytest -q -p no:cacheprovider tests/host; \
	stage tier2 node tests/mpy/run.mjs; \
	stage tier3 $(PY) -m backhug_host.mpycheck; \
	echo "== tier4 (ran beside tiers 1-3)"; wait $$tier4; cat build/test/tier4.log; \
	test "$$(cat build/test/tier4.rc)" = ok || status=1; \
	echo "== summary"; \
	echo "lint:   $$(cat build/test/lint.rc)  $$(grep -E '^(Found|All checks)' build/test/lint.log | head -n 1)"; \
	echo "tier 1: $$(cat build/test/tier1.rc)  $$(tail -n 1 build/test/tier1.log | tr -d '=')"; \
	echo "tier 2: $$(cat build/test/tier2.rc)  $$(tail -n 1 build/test/tier2.log)"; \
	echo "tier 3: $$(cat build/test/tier3.rc)  $$(tail -n 1 build/test/tier3.log)"; \
	echo "tier 4: $$(cat build/test/tier4.rc)  $$(tail -n 1 build/test/tier4.log | tr -d '=')"; \
	exit $$status

lint: $(VENV_STAMP)
	$(PY) -m ruff check .

tier1: $(VENV_STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests/host

tier2: $(NODE_STAMP)
	node tests/mpy/run.mjs

tier3: $(VENV_STAMP)
	$(PY) -m backhug_host.mpycheck

# The virtual device: MicroPython's unix port built from ../shared (needs a C compiler), then the
# scenarios of tests/vdev/ on it.
vdev: $(VENV_STAMP)
	$(PY) -m backhug_host.vdev.build

tier4: vdev
	$(PY) -m pytest -q -p no:cacheprovider tests/vdev

# --- build, benchmarks, simulator ---------------------------------------------------------------

mpy: $(VENV_STAMP)
	rm -rf build/mpy
	$(PY) -m backhug_host.mpycheck --compile-only --out build/mpy

bench: $(VENV_STAMP) $(NODE_STAMP)
	$(PY) -m backhug_host.bench

sim: $(VENV_STAMP)
	$(PY) -m backhug_host.sim $(ARGS)

# A development bundle (--dev) unless ARGS gives --key or BACKHUG_SIGNING_KEY is set.
BOARD ?= backhug_v3
bundle: $(VENV_STAMP)
	$(PY) -m backhug_host.bundler build --board $(BOARD) \
	  $(if $(or $(findstring --key,$(ARGS)),$(BACKHUG_SIGNING_KEY)),,--dev) $(ARGS)

# Provisioning (docs/factory.md): builds the bundle (dev key unless PUBLIC_KEY/ARGS say otherwise)
# and installs it with the pinned micropython-lib packages (tools/backhug_host/mplib.json) from
# build/mipcache, prepared from the offline index in ../shared whenever the pins change.
HARDWARE ?= $(if $(filter devkit,$(BOARD)),devkit-c1,v3.1)
MIPCACHE := build/mipcache/cache.json
$(MIPCACHE): tools/backhug_host/mplib.json $(VENV_STAMP)
	$(PY) -m backhug_host.factory.mipcache prepare build/mipcache

flash: $(VENV_STAMP) $(MIPCACHE)
	@test -n "$(PORT)" || { echo "make flash: give PORT=/dev/ttyACM0 (and BOARD=, SERIAL=)"; exit 2; }
	$(MAKE) --no-print-directory bundle BOARD=$(BOARD) \
	  ARGS="$(if $(BUNDLE_KEY),--key $(BUNDLE_KEY),)"
	$(PY) -m backhug_host.factory.provision --port $(PORT) --board $(BOARD) \
	  $(if $(SERIAL),--serial $(SERIAL),) --hardware $(HARDWARE) \
	  $(if $(PUBLIC_KEY),--public-key $(PUBLIC_KEY),--dev) $(ARGS)

# End-of-line test (docs/factory.md): the report goes to build/eol/<serial>.json.
eol: $(VENV_STAMP)
	$(PY) -m backhug_host.factory.eol $(if $(SIM),--sim,--port $(PORT)) \
	  $(if $(SERIAL),--serial $(SERIAL),) $(ARGS)

clean:
	rm -rf build .hypothesis .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -not -path './.venv/*' -not -path './node_modules/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) node_modules

fault-table: $(VENV_STAMP)  ## regenerate docs/fault-injection.md from a fault-injection run
	BACKHUG_UPDATE_DOCS=1 $(PY) -m pytest -q -p no:cacheprovider tests/host/test_fault_injection.py
