# Two commands on a fresh machine (Python 3.11+ and make):
#   make demo    set everything up, then run `dtm demo` on embedded services
#   make test    set everything up, then run the whole test suite
VENV ?= .venv
PYTHON ?= python3

.PHONY: demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/dtm demo $(ARGS)

# Offline validators for tests/deploy (kubernetes-validate, check-jsonschema, promtool, ...).
# Best effort on a laptop: a validator that cannot be installed makes its tests skip, except in CI
# (.ci/run sets DTM_REQUIRE_VALIDATORS=1, which turns those skips into failures).
.cache/validators/.installed: scripts/install-validators.sh $(VENV)/.installed
	-PYTHON=$(VENV)/bin/python scripts/install-validators.sh && touch $@

test: $(VENV)/.installed .cache/validators/.installed
	$(VENV)/bin/pytest -q $(ARGS)

bench: $(VENV)/.installed
	$(VENV)/bin/python bench/run_all.py

clean:
	rm -rf $(VENV) .cache build *.egg-info
