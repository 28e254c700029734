# Two commands on a fresh machine: `make book` and `make test`. Both create .venv when it is
# missing and install the package with its book and test extras.
#
# PyTorch is installed first, on its own, so pip never picks a build you did not choose:
# TORCH defaults to torch==2.13.0. On a laptop without a GPU, a CPU-only build is smaller:
#   make test TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
# An existing torch in the venv is kept.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install test unit book labs clean help

help:
	@echo "make book   build the HTML book in _build/html (runs every chapter)"
	@echo "make test   unit tests, doctests and every notebook (nbval)"
	@echo "make unit   unit tests and doctests only"
	@echo "make labs   student notebooks (solutions replaced by stubs) in book/student/"
	@echo "make clean  remove _build (keeps .venv)"

$(PY):
	$(PYTHON) -c "import sys; assert sys.version_info >= (3, 10), 'Python >= 3.10 needed, found ' + sys.version"
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install $(TORCH)
	$(PY) -m pip install -e ".[book,test]"
	@touch $(STAMP)

install: $(STAMP)

# Trained models are shared between chapters of one run (emseg_tutorial.paper.stages) and
# never between runs: each target starts from an empty EMSEG_RUNS folder, and `make book`
# rebuilds every page (--all), so every number in the book comes from this build.
RUNS := $(CURDIR)/_build/runs

# One pytest run: unit tests, the library's doctests and every notebook in book/.
test: $(STAMP)
	rm -rf $(RUNS)-test
	EMSEG_RUNS=$(RUNS)-test EMSEG_PROGRESS=0 $(PY) -m pytest --doctest-modules emseg_tutorial tests \
		--nbval-lax --nbval-cell-timeout=3600 book --ignore=book/student $(PYTEST_ARGS)

unit: $(STAMP)
	$(PY) -m pytest --doctest-modules emseg_tutorial tests $(PYTEST_ARGS)

book: $(STAMP)
	rm -rf $(RUNS)
	EMSEG_RUNS=$(RUNS) EMSEG_PROGRESS=0 EMSEG_WIDGETS=static $(VENV)/bin/jupyter-book build . --all -W --keep-going
	@echo "open _build/html/index.html"

# The committed chapters are the instructor version; students get copies with every solution
# (### BEGIN SOLUTION ... ### END SOLUTION) replaced by a stub, committed in book/student/ (what the
# launch buttons open; tests/test_labs.py fails while they are out of date). See book/labs/instructor.md.
labs: $(STAMP)
	rm -f book/student/*.ipynb
	$(PY) -m emseg_tutorial.labs student book book/student

clean:
	rm -rf _build
