# balloon-harness: every target bootstraps what it needs and skips what is done.
#   make test        system packages, venv, build (cached), all tests (boots guests)
#   make test-fast   only the tests that boot no guest and build nothing (< 45 s; `pipeline` ones: make test)
#   make test-slow   the long checks make test leaves out (Debian 13 host path, design matrix)
#   make lint        ruff, mypy and the import layers (import-linter)
#   make reproduce   the RFC experiment, printed as a table
#   make docs        the documentation site (docs/, mkdocs.yml) into site/, warnings as errors
#   make upstream-trees  ../linux-upstream and ../qemu-upstream: the upstream series' trees (DEST=DIR: elsewhere)
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
HARNESS := $(VENV)/bin/balloon-harness
STAMP := $(VENV)/.installed

.PHONY: bootstrap system venv build test test-fast test-slow lint reproduce doctor docs upstream-trees clean

# `make test` and `make test-slow` also install what only the tests use (a headless browser for
# the docs site): target-specific, so a prerequisite's `system` sees it too.
BOOTSTRAP_FLAGS ?=
test test-slow: BOOTSTRAP_FLAGS = --tests
system:
	@tools/bootstrap-system.sh $(BOOTSTRAP_FLAGS)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test,lint,docs]'
	@touch $@

venv: $(STAMP)

bootstrap: system venv

build: bootstrap
	$(HARNESS) build

# pytest exits 5 when it collected no test: that is a failure here.
test: build
	@$(PY) -m pytest -m "not slow"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest ran no test" >&2; exit 1; fi; exit $$rc

# Long matrices and host-path checks (Debian 13 root, every design x reps): not in CI's budget.
test-slow: build
	$(HARNESS) build --all-stacks
	@$(PY) -m pytest -m slow; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-slow: pytest ran no test" >&2; exit 1; fi; exit $$rc

# Three workers on 2 cores: some of these tests wait (sockets, sleeps, subprocesses), so one
# worker more than the cores keeps both busy; every worker collects (imports) the whole suite
# again, so more cost CPU (pytest-xdist; FAST_WORKERS=0 runs them in one process). worksteal:
# an idle worker takes queued tests from a busy one, so a long test (a 1,000-example property)
# drawn late does not leave one core idle at the end.
# Bytecode and pytest's rewritten test modules are cached (__pycache__/, git-ignored), also
# where the environment sets PYTHONDONTWRITEBYTECODE: otherwise each worker compiles the
# harness and assertion-rewrites the ~150 test modules it collects on every run (2 CPU-s a
# worker). Not PYTHONPYCACHEPREFIX: that would also hide site-packages' own bytecode.
FAST_WORKERS ?= 3
FAST_DIST ?= worksteal
test-fast: venv
	@env -u PYTHONDONTWRITEBYTECODE $(PY) -m pytest -m "not vm and not build and not pipeline" -n $(FAST_WORKERS) $(if $(filter 0,$(FAST_WORKERS)),,--dist $(FAST_DIST)); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-fast: pytest ran no test" >&2; exit 1; fi; exit $$rc

# ruff (style, imports, bugs), mypy (types) and import-linter (the layers of harness/:
# no upward import, no cycle), all configured in pyproject.toml.
lint: venv
	$(VENV)/bin/ruff check harness tests benchmarks docs/hooks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# reproduce builds what its arms name (stock and the RFC port), not every design: `build`
# (every variant of the default stack) is for the tests.
reproduce: bootstrap
	$(HARNESS) reproduce

doctor: venv
	$(HARNESS) doctor

# The two git trees scenarios/upstream-series.toml builds (beside this checkout by default):
# the upstream series applied with git am on Debian's Linux 7.2 and QEMU 10.2 sources, made
# from the cache's trees (downloaded and unpacked first if missing). An existing tree is kept
# if it already is exactly that, else refused.
DEST ?=
upstream-trees: venv
	$(HARNESS) upstream-trees $(if $(DEST),--dest $(DEST))

# The documentation site: MkDocs + mkdocs-material (the `docs` extra), its reference pages
# generated from the code at build time (docs/hooks/reference.py); --strict turns every
# warning (a broken link, a page outside the nav) into a failure. SITE is git-ignored.
SITE ?= site
docs: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir $(SITE)

clean:
	rm -rf $(VENV) results .pytest_cache $(SITE)
