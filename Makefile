# Two commands on a fresh machine:  `make course`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.dfcourse-installed
# GNU OpenMP threads (torch's CPU kernels) spin 300,000 times between parallel regions; beside
# other busy processes that spinning starves the thread a barrier waits for. A short spin is as
# fast when the machine is quiet and faster under load: benchmarks/bench_thread_policy.py.
export GOMP_SPINCOUNT ?= 10000

.PHONY: setup course test test-all test-fast lint lab bench clean-data student grade need-submissions

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

## Static checks, then the test suite, each notebook executed once (quick mode, instructor edition).
test: lint
	$(BIN)/python -m pytest -m "not rerun"

## Everything `make test` runs, then (same session, reloading its runs) the notebooks again: student
## edition, nbgrader validate, JupyterLab in a browser (tests marked rerun). What .ci/run runs.
test-all: lint
	$(BIN)/python -m pytest

## Everything but the notebook executions and other slow tests.
test-fast: lint
	$(BIN)/python -m pytest -m "not slow"

## JupyterLab on LAB_DIR (default notebooks/; students: `make lab LAB_DIR=student/notebooks`). nbgrader's
## Validate button checks the open notebook, with the per-cell timeout of ./nbgrader_config.py.
LAB_DIR ?= notebooks
lab: setup
	$(BIN)/jupyter lab $(LAB_DIR)

## The student bundle in student/: notebooks/ (nbgrader's student edition: no solutions, no hidden
## tests), package/ (the dfcourse wheel), README.md and a Makefile (setup, lab, validate).
student: setup
	$(BIN)/python -m dfcourse student --bundle

## Autograde SUBMISSIONS/<student>/<notebook>.ipynb: grades/grades.csv and grades/feedback/.
## GRADE_TIMEOUT is nbgrader's per-cell limit in seconds.
GRADE_TIMEOUT ?= 600
grade: need-submissions setup
	$(BIN)/python -m dfcourse grade "$(SUBMISSIONS)" --timeout $(GRADE_TIMEOUT)

need-submissions:
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=DIR  (DIR/<student>/<notebook>.ipynb)" >&2; exit 2; }

bench: setup
	$(BIN)/python benchmarks/bench_mtcnn.py
	$(BIN)/python benchmarks/bench_detector.py
	$(BIN)/python benchmarks/bench_clip_cache.py
	$(BIN)/python benchmarks/bench_notebooks.py

clean-data:
	rm -rf data/demo data/prepared data/feature_cache runs
