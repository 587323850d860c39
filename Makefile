# Two entry points for a fresh Debian machine; each sets itself up first.
#   make demo   the default study (runs/demo)
#   make test   lint + the whole test suite
# Set-up: a .venv at the repository root, pip install of advqa with the extras
# the target needs, and the Debian data package for Fashion-MNIST.

VENV ?= .venv
BOOTSTRAP_PYTHON ?= $(shell command -v python3.11 || command -v python3)
PYTHON := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system demo test lint bench clean

$(PYTHON):
	$(BOOTSTRAP_PYTHON) -m venv $(VENV)

# Re-install only when the project's dependencies change.
$(VENV)/.installed-%: pyproject.toml | $(PYTHON)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[$*]'
	touch $@

# wordnet-base (+ wordnet-sense-index): WordNet 3.0 in /usr/share/wordnet, read offline by
# advqa.detect.semantic (Wu-Palmer similarity of ImageNet classes) and by its NLTK check;
# without recommends, which would pull in the wordnet GUI and Tk.
system:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] || [ ! -f /usr/share/wordnet/data.noun ]; then \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			wordnet-base wordnet-sense-index; \
	fi

setup: system $(VENV)/.installed-test

demo: system $(VENV)/.installed-test
	$(VENV)/bin/advqa run

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .

test: system $(VENV)/.installed-test lint
	$(VENV)/bin/pytest

bench: system $(VENV)/.installed-dev
	$(PYTHON) benchmarks/pgd_throughput.py --markdown
	$(PYTHON) benchmarks/advdss_speed.py
	$(PYTHON) benchmarks/classifier_speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .hypothesis
