# The two commands: `make reproduce` (the main job) and `make test`.
# Both create .venv when missing; a fresh machine needs only Python 3.11, pip and gcc.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch is pinned (constraints.txt: torch==2.13.0) so that this machine takes its local CPU wheel;
# pyproject.toml asks only for a range, which CUDA builds satisfy. torchvision stays out.
CONSTRAINTS := constraints.txt

.PHONY: test test-fast reproduce report notebooks anchor bench gpu-check lint strip clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS) | $(PY)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) torch
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[notebooks,tune]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(CONSTRAINTS) $(VENV)/.installed
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[dev,notebooks]"
	touch $@

test: $(VENV)/.installed-dev
	$(PY) -m pytest -n 2 --dist loadgroup --durations=20

# the unit group only (about a minute): formulas, rounds, statistics, plots, the layers
test-fast: $(VENV)/.installed-dev
	$(PY) -m pytest -n 2 --dist loadgroup -m unit

# the tuned comparison (docs/tuning.md), run twice with two tuning seeds (0 and 100: no seed shared): every method and GRAWA's twin,
# 8 Optuna trials per searched hyperparameter, 3 seeds per trial, each trial 6 simulated seconds of the
# MNIST-1D MLP at M = 8 (10 ms steps, 1 Gbit/s, 0.1 ms latency), then 5 fresh seeds paired
TUNE_FLAGS := --model mlp --workers 8 --batch-size 32 --steps 100000 --time-budget 6 --step-time 0.01 \
	--bandwidth 1.25e8 --latency 1e-4 --jobs 2

reproduce: $(VENV)/.installed
	$(PY) -m grawa_sim reproduce
	$(PY) -m grawa_sim notebooks
	$(PY) -m grawa_sim tune $(TUNE_FLAGS) --study tb8-seed0 --seed 0
	$(PY) -m grawa_sim tune $(TUNE_FLAGS) --study tb8-seed100 --seed 100
	$(PY) -m grawa_sim report

# docs/results.md's tables from figures/*.csv (report --check: exit 1 when they differ; run by the tests)
report: $(VENV)/.installed
	$(PY) -m grawa_sim report

notebooks: $(VENV)/.installed
	$(PY) -m grawa_sim notebooks

anchor: $(VENV)/.installed
	$(PY) -m grawa_sim anchor
	$(PY) -m grawa_sim report

bench: $(VENV)/.installed
	$(PY) -m grawa_sim bench

# The prepared GPU check (under 5 minutes on one CUDA GPU): with the machine's own CUDA build of torch,
# not the venv's CPU wheel. Wheels in .whl/ (mnist1d, pyhessian, requests ...) are installed offline first.
GPU_OUT ?= results/gpu_check.json
GPU_SITE ?= /tmp/grawa-gpu-site
gpu-check:
	@if ls .whl/*.whl >/dev/null 2>&1; then $(PYTHON) -m pip install -q --no-index --no-deps --target $(GPU_SITE) .whl/*.whl; fi
	PYTHONPATH=$(GPU_SITE):$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(PYTHON) -m grawa_sim bench --gpu --out $(GPU_OUT)

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check grawa_sim tests
	$(VENV)/bin/lint-imports

strip: $(VENV)/.installed
	$(PY) -m grawa_sim.experiments.notebook_runner --strip notebooks/*.ipynb

clean:
	rm -rf $(VENV) results .pytest_cache
