# Two entry points: `make demo` (set up + run the main job) and `make test` (set up + run the tests).
#
# Two environments, side by side:
#   .venv       the core: the newest Python >= 3.11 found (else 3.10), current torch and numpy 2;
#               .venv/bin/qsnn-lava is the command.
#   .venv-lava  Lava's own: Python 3.10, lava-nc 0.10.0, lava-dl 0.6.0, torch 2.3.1, numpy < 2. The core
#               runs Lava in a worker process of this interpreter (found beside .venv; QSNN_LAVA_PYTHON
#               overrides). Made whenever a Python 3.10 exists; without one, everything but Lava works.
SHELL := /bin/bash
VENV ?= .venv
LAVA_VENV ?= .venv-lava
DEMO_OUT ?= out/demo
PYENV := $(HOME)/.pyenv/versions
# the first interpreter of a version that runs, on PATH or in pyenv's folders
find_python = $(shell for p in python$(1) $(PYENV)/$(1)*/bin/python$(1) /usr/local/bin/python$(1) /usr/bin/python$(1); do \
  if $$p -c 'import sys; assert sys.version_info[:2] == tuple(map(int, "$(1)".split(".")))' >/dev/null 2>&1; then \
  command -v $$p || echo $$p; break; fi; done)
PYTHON310 := $(call find_python,3.10)
PYTHON_CORE := $(firstword $(call find_python,3.13) $(call find_python,3.12) $(call find_python,3.11) $(PYTHON310))
comma := ,
# $(call make_venv,PYTHON,FOLDER,EXTRAS): a fresh virtual environment with qsnn-lava installed editable
define make_venv
	@echo "$(2): $$($(1) --version)"
	rm -rf $(2)
	$(1) -m venv $(2)
	$(2)/bin/python -m pip install -q --upgrade pip
	$(2)/bin/python -m pip install -q -e '.[$(3)]'
	@touch $(2)/.installed
endef
STAMP := $(VENV)/.installed
LAVA_STAMP := $(LAVA_VENV)/.installed

.PHONY: setup lava demo test bench clean

setup: $(STAMP) lava

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON_CORE)" ]; then \
	  echo "error: no Python 3.10 to 3.13 found. Debian/Ubuntu: apt-get install python3 python3-venv;" \
	       "pyenv: pyenv install 3.13"; exit 2; fi
	$(call make_venv,$(PYTHON_CORE),$(VENV),test$(comma)frameworks)

# Lava's environment; skipped (with the way to get it) when no Python 3.10 exists.
lava:
	@if [ -z "$(PYTHON310)" ]; then \
	  echo "note: no Python 3.10 found, so Lava's environment $(LAVA_VENV) is not made; everything but Lava works." \
	       "For Lava: apt-get install python3.10 python3.10-venv (where the distribution has it), or" \
	       "pyenv install 3.10, then run make lava"; \
	else $(MAKE) --no-print-directory $(LAVA_STAMP); fi

$(LAVA_STAMP): pyproject.toml
	$(call make_venv,$(PYTHON310),$(LAVA_VENV),lava$(comma)test)

demo: setup
	@mkdir -p $(dir $(DEMO_OUT))
	$(VENV)/bin/qsnn-lava demo --out $(DEMO_OUT)

# The core's tests run in the core environment (Lava through the worker); the few tests that import Lava
# into the test process itself (marker lava_env) run inside Lava's environment.
test: setup
	$(VENV)/bin/python -m pytest -q tests -m "not lava_env"
	@if [ -x $(LAVA_VENV)/bin/python ]; then \
	  $(LAVA_VENV)/bin/python -m pytest -q tests -m lava_env; \
	else echo "skipped the lava_env tests: no Lava environment (make lava)"; fi

bench: setup
	$(VENV)/bin/python bench/reference_vs_lava.py --samples 360
	$(VENV)/bin/python bench/lava_runner.py --samples 60
	$(VENV)/bin/python bench/events.py
	$(VENV)/bin/python bench/parallel_training.py
	$(VENV)/bin/python bench/ddp.py
	@if $(VENV)/bin/python -c "import snntorch, spikingjelly" 2>/dev/null; then $(VENV)/bin/python bench/peers.py; \
	 else echo "skipping bench/peers.py: pip install -e '.[peers]'"; fi
	@if $(VENV)/bin/python -c "import snntorch" 2>/dev/null; then $(VENV)/bin/python bench/nir_digits.py; \
	 else echo "skipping bench/nir_digits.py: pip install -e '.[frameworks]'"; fi
	@if [ -d /usr/share/datasets/fashion-mnist ]; then $(VENV)/bin/python bench/verify_fashion.py; \
	 else echo "skipping bench/verify_fashion.py: apt-get install dataset-fashion-mnist"; fi

clean:
	rm -rf $(VENV) $(LAVA_VENV) out build *.egg-info
