# Two commands do everything (see README.md):
#   make book   set up .venv, build the HTML book, print where it is
#   make test   set up .venv, run the unit tests and re-execute + compare every chapter (nbval)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# Data: $COMPANION_DATA if set; else the offline MNIST copy beside the repository when there is
# one (this project's CI machines); else the companion downloads MNIST into a per-user cache.
SHARED_DATA := $(abspath ../shared/data)
ifeq ($(origin COMPANION_DATA), undefined)
  ifneq ($(wildcard $(SHARED_DATA)/MNIST/raw),)
    export COMPANION_DATA := $(SHARED_DATA)
  endif
endif
# One thread per process: tests and notebooks run two at a time, and the stored outputs were
# made this way.
export OMP_NUM_THREADS ?= 1

.PHONY: setup book test notebooks clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

book: setup
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "The book is at file://$(CURDIR)/_build/html/index.html"

test: setup
	$(BIN)/python -m pytest

# After changing companion/: re-execute the chapters so their stored outputs are true again.
notebooks: setup
	$(BIN)/python tools/run_notebooks.py

clean:
	rm -rf _build .pytest_cache
