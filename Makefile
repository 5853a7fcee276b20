# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean default-model loco

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall only when the package metadata changes: keeps `make test` idempotent and fast.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m ajepa.train

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/frontend.py
	$(PY) bench/train_step.py
	$(PY) bench/recipe_step.py --data ../shared/data
	$(PY) bench/embed.py

# The shipped default encoder (ajepa/pretrained/default/README.md): the cpu15 recipe on the shared corpus, seed 0, exported in
# int8 (per-channel scales; under 2 MiB) with its recommended read-out into the package. About 6 minutes on 2 CPU cores.
DEFAULT_RUN := runs/default_model
default-model: $(STAMP)
	$(PY) -m ajepa.train experiment=cpu15 data.root=../shared/data seed=0 hydra.run.dir=$(DEFAULT_RUN)
	$(PY) -m ajepa export $(DEFAULT_RUN)/checkpoints/last.pt --out ajepa/pretrained/default --weights-dtype int8

# The leave-one-corpus-out table of docs/RESULTS.md (JEPA, MAE, random, log-mel; 2 seeds; strong probe): 16
# pretraining runs and one evals.suite, 80 minutes on 2 Intel Xeon (AMX) cores. Run it again after an interruption.
loco: $(STAMP)
	$(PY) -m evals.loco --data-root ../shared/data

clean:
	rm -rf $(VENV) outputs runs .pytest_cache
