# Two entry points: `make demo` (set up + run the main job) and `make test` (set up + run the tests).
# Lava needs Python 3.10 exactly; we look for it on PATH and in pyenv's usual place.
SHELL := /bin/bash
VENV ?= .venv
DEMO_OUT ?= out/demo
PY_CANDIDATES := python3.10 $(HOME)/.pyenv/versions/3.10*/bin/python3.10 /usr/local/bin/python3.10 /usr/bin/python3.10
PYTHON310 := $(shell for p in $(PY_CANDIDATES); do if $$p -c 'import sys; assert sys.version_info[:2]==(3,10)' >/dev/null 2>&1; then command -v $$p || echo $$p; break; fi; done)
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON310)" ]; then \
	  echo "error: Python 3.10 not found (Lava needs >=3.10,<3.11)."; \
	  echo "  Debian/Ubuntu: apt-get install python3.10 python3.10-venv   pyenv: pyenv install 3.10"; \
	  exit 2; fi
	$(PYTHON310) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[lava,test]'
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/qsnn-lava demo --out $(DEMO_OUT)

test: setup
	$(VENV)/bin/python -m pytest -q tests

bench: setup
	$(VENV)/bin/python bench/reference_vs_lava.py --samples 360
	$(VENV)/bin/python bench/lava_runner.py --samples 60
	$(VENV)/bin/python bench/events.py
	$(VENV)/bin/python bench/parallel_training.py
	@if [ -d /usr/share/datasets/fashion-mnist ]; then $(VENV)/bin/python bench/verify_fashion.py; \
	 else echo "skipping bench/verify_fashion.py: apt-get install dataset-fashion-mnist"; fi

clean:
	rm -rf $(VENV) out build *.egg-info
