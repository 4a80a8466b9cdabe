# balloon-harness: every target bootstraps what it needs and skips what is done.
#   make test        system packages, venv, build (cached), all tests (boots guests)
#   make test-fast   only the tests that need no guest
#   make reproduce   the RFC experiment, printed as a table
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
HARNESS := $(VENV)/bin/balloon-harness
STAMP := $(VENV)/.installed

.PHONY: bootstrap system venv build test test-fast reproduce doctor clean

system:
	@tools/bootstrap-system.sh

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

venv: $(STAMP)

bootstrap: system venv

build: bootstrap
	$(HARNESS) build

# pytest exits 5 when it collected no test: that is a failure here.
test: build
	@$(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest ran no test" >&2; exit 1; fi; exit $$rc

test-fast: venv
	@$(PY) -m pytest -m "not vm and not build"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-fast: pytest ran no test" >&2; exit 1; fi; exit $$rc

reproduce: build
	$(HARNESS) reproduce

doctor: venv
	$(HARNESS) doctor

clean:
	rm -rf $(VENV) results .pytest_cache
