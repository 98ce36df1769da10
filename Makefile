# The two quick-start commands (see README): `make report` and `make test`.
# Each creates .venv on first use and installs the package with its dependencies.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: report report-full test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# The CPU build of torch first, so that the range in pyproject.toml installs nothing more.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[test,distributed,parquet]"
	touch $(STAMP)

report: $(STAMP)
	$(VENV)/bin/phase-transition report --quick --out reports

report-full: $(STAMP)
	$(VENV)/bin/phase-transition report --out reports --jobs 2 --readme README.md

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile -q

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache
