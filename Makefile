# procesos — set-up and checks. Every target creates .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-deep test-browser lint typecheck pytest test-ray test-py313 test-cpython bench clean

DEMO_STAMP := $(VENV)/.demo-installed
PIP := $(PY) -m pip install --disable-pip-version-check --progress-bar on

$(PY):
	$(PYTHON) -m venv $(VENV)

# The demo needs procesos and its runtime dependencies only (cloudpickle, rich).
$(DEMO_STAMP): pyproject.toml | $(PY)
	@echo "== installing procesos (cloudpickle, rich) into $(VENV)"
	$(PIP) -e .
	touch $(DEMO_STAMP)

# Tests need the development tools too (pytest, ruff, mypy, numpy, Dask, Jupyter, ...).
$(STAMP): pyproject.toml | $(PY)
	@echo "== installing procesos with its development tools into $(VENV) (a minute or two the first time)"
	$(PIP) -e ".[dev]"
	touch $(STAMP) $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(PY) -m procesos demo

test: lint typecheck pytest

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks examples

typecheck: $(STAMP)
	$(PY) -m mypy

pytest: $(STAMP)
	$(PY) -m pytest -q

# The generated tests with many more examples (make test runs a few hundred):
# the engine against its model, and the fuzzers of the tracker and the zygote.
test-deep: $(STAMP)
	PROCESOS_HYPOTHESIS_PROFILE=deep PROCESOS_FUZZ_EXAMPLES=5000 $(PY) -m pytest -q -p no:randomly --timeout 3600 tests/test_engine_model.py tests/test_quick_chunks.py tests/test_dropped_maps.py tests/test_security.py tests/test_exception_travel.py


# The Ray backend's tests (Ray is large: not in the dev extra, and plain
# `make test` skips them).
test-ray: $(STAMP)
	$(PY) -m pip install -q -e ".[dev,ray]"
	PROCESOS_TEST_RAY=1 $(PY) -m pytest -q tests/test_ray_backend.py

# The suite again on Python 3.13 where pyenv has it (skipped quietly elsewhere).
test-py313:
	@if command -v pyenv >/dev/null && pyenv prefix 3.13 >/dev/null 2>&1; then \
		P=$$(pyenv prefix 3.13)/bin/python3; \
		$$P -m venv .venv313 && .venv313/bin/pip install -q -e ".[dev]" && .venv313/bin/python -m pytest -q; \
	else echo "Python 3.13 not found; skipped"; fi

# CPython's own multiprocessing tests against the zygote start method, and its
# concurrent.futures tests against procesos.ProcessPoolExecutor.
# (Both exit with 1 while some test that passes on the standard library does
# not on procesos: the second runs all the same.)
test-cpython: $(STAMP)
	$(PY) benchmarks/cpython_compat.py; status=$$?; \
	$(PY) benchmarks/cpython_futures_compat.py && exit $$status

bench: $(STAMP)
	$(PY) -m procesos bench

clean:
	rm -rf $(VENV) .venv313 .pytest_cache .mypy_cache .ruff_cache
