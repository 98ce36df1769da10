# The two quick-start commands (see README): `make report` and `make test`.
# Each creates .venv on first use and installs the package with its dependencies.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: report report-full test bench docs docs-check lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# The CPU build of torch first, so that the range in pyproject.toml installs nothing more.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[test,distributed,parquet]"
	touch $(STAMP)

report: $(STAMP)
	$(VENV)/bin/phase-transition report --quick --out reports

# One thread per worker; glibc keeps freed memory instead of handing it back to the OS at every
# training step (1.24x faster torch training in benchmarks/README.md, CIR section).
report-full: $(STAMP)
	OMP_NUM_THREADS=1 MALLOC_TRIM_THRESHOLD_=2000000000 MALLOC_MMAP_THRESHOLD_=2000000000 MALLOC_TOP_PAD_=268435456 \
		$(VENV)/bin/phase-transition report --out reports --jobs 2 --readme README.md

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile -q

# The documentation: Sphinx + numpydoc + sphinx-gallery (every demo executed), MathJax served locally.
DOCS_STAMP := $(VENV)/.docs-installed
MATHJAX := docs/_static/mathjax/tex-chtml.js

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[test,distributed,parquet,docs,lint]"
	touch $(DOCS_STAMP)

$(MATHJAX):
	npm install --prefix .cache/npm --silent --no-audit --no-fund mathjax@3
	mkdir -p docs/_static/mathjax
	cp -r .cache/npm/node_modules/mathjax/es5/. docs/_static/mathjax/

docs: $(DOCS_STAMP) $(MATHJAX)
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	@echo "docs: open docs/_build/html/index.html"

# Opens the built site in headless Chromium (installed from the system packages when missing).
docs-check: $(DOCS_STAMP)
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)
	DOCS_REQUIRED=1 $(PY) -m pytest -q tests/test_docs_site.py

lint: $(DOCS_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache docs/_build docs/generated docs/auto_examples docs/api.rst
