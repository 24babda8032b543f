# `make demo` and `make test` each create .venv if it is missing, install the project into it, then run.
# TORCH picks the torch build: the CPU default avoids a multi-GB CUDA download; GPU users set e.g.
#   make demo TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
PYTHON ?= python3
TORCH ?= torch==2.13.0
# test processes (pytest-xdist): one per core of the 2-core machines the suite is sized for
TEST_WORKERS ?= 2
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/python -m lightning_skel.demo

# The tests marked `numerics` compare floats across batch shapes, ranks and processes: the in-process ones
# run a second time under the portable kernels, as on a CPU whose dispatch differs from this one (the DDP
# ones, minutes each there, are run under those kernels before a release: see the README's Tests section).
test: $(STAMP)
	$(BIN)/ruff check .
	WANDB_MODE=offline $(BIN)/python -m pytest -q -n $(TEST_WORKERS)
	ATEN_CPU_CAPABILITY=default WANDB_MODE=offline $(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m 'numerics and not slow' -k 'not ddp'

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) outputs runs .cache .pytest_cache
