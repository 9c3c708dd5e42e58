# Two entry points for a fresh Linux machine with Python 3.11:
#   make demo   phantom -> train the demo Seg-CycleGAN -> predict -> evaluate
#   make test   the whole pytest suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= demo-output
TORCH_VERSION ?= 2.13.0

.PHONY: venv demo test bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU wheel: an unpinned torch would pull several GB of CUDA packages.
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/python -m VirtualContrastTraining demo --out $(DEMO)

test: venv
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_synthesis.py

clean:
	rm -rf $(VENV) $(DEMO)
