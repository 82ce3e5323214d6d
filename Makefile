# The two commands: `make reproduce` (the main job) and `make test`.
# Both create .venv when missing; a fresh machine needs only Python 3.11, pip and gcc.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch is pinned so that this machine takes its local CPU wheel; torchvision stays out.
TORCH := torch==2.13.0

.PHONY: test reproduce notebooks anchor bench lint strip clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[notebooks]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[dev,notebooks]"
	touch $@

test: $(VENV)/.installed-dev
	$(PY) -m pytest -n 2 --dist loadgroup

reproduce: $(VENV)/.installed
	$(PY) -m grawa_sim reproduce
	$(PY) -m grawa_sim notebooks

notebooks: $(VENV)/.installed
	$(PY) -m grawa_sim notebooks

anchor: $(VENV)/.installed
	$(PY) -m grawa_sim anchor

bench: $(VENV)/.installed
	$(PY) -m grawa_sim bench

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check grawa_sim tests

strip: $(VENV)/.installed
	$(PY) -m grawa_sim.notebook_runner --strip notebooks/*.ipynb

clean:
	rm -rf $(VENV) results .pytest_cache
