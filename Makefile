# flarena: the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Torch is installed first and on its own, so that no dependency pulls a newer torch with CUDA
# wheels onto a CPU machine. GPU users: make TORCH_SPEC="torch" (or keep the build already in the venv).
# CPU users elsewhere: make TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu".
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
PIP := $(BIN)/python -m pip
DEMO_OUT ?= results/demo

.PHONY: demo test bench lint typecheck venv dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(PIP) install -q $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e ".[dev]"
	touch $@ $(VENV)/.installed

venv: $(VENV)/.installed
dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(BIN)/flarena run configs/demo.toml --out $(DEMO_OUT)

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q tests

# byzfl (aggregator comparison) requires torchvision, which would pull a CUDA torch; its
# aggregators need only numpy/scipy/torch, so it is installed without its dependencies.
bench: $(VENV)/.installed-dev
	$(PIP) install -q --no-deps byzfl==0.0.11
	$(BIN)/python -m pytest benchmarks -q --benchmark-columns=min,median,mean,rounds --benchmark-sort=name

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) results .pytest_cache .mypy_cache .ruff_cache
