# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv and install the pinned dependencies (constraints.txt pins
# torch==2.13.0, a CPU wheel; pyproject keeps a range for GPU users).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/llamaforge demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

lint: $(STAMP)
	$(BIN)/ruff check llamaforge tests benchmarks
	$(BIN)/ruff format --check llamaforge tests benchmarks

clean:
	rm -rf $(VENV) runs/demo
