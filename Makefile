# Two commands on a fresh machine:  `make course`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.dfcourse-installed

.PHONY: setup course test test-fast lint lab bench clean-data

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	$(BIN)/python -m ipykernel install --sys-prefix --name dfcourse --display-name "Python (dfcourse)" >/dev/null
	@touch $@

setup: $(STAMP)

## Execute every notebook headless (quick mode unless DATA_ROOT/notebook parameters say
## otherwise), save executed copies to runs/executed/ and figures to figures/, print a report.
course: setup
	$(BIN)/python -m dfcourse course

## Static checks (ruff: pyflakes-class errors) over the package, tests, benchmarks and notebooks.
lint: setup
	$(BIN)/ruff check dfcourse tests benchmarks notebooks

## Static checks, then the whole test suite, notebooks included.
test: lint
	$(BIN)/python -m pytest

## Everything but the notebook executions and other slow tests.
test-fast: lint
	$(BIN)/python -m pytest -m "not slow"

lab: setup
	$(BIN)/jupyter lab notebooks

bench: setup
	$(BIN)/python benchmarks/bench_mtcnn.py
	$(BIN)/python benchmarks/bench_detector.py
	$(BIN)/python benchmarks/bench_clip_cache.py
	$(BIN)/python benchmarks/bench_notebooks.py

clean-data:
	rm -rf data/demo data/prepared data/feature_cache runs
