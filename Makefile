# Two entry points for a fresh Linux machine with Python 3.11:
#   make demo   phantom -> train the demo Seg-CycleGAN -> predict -> evaluate
#   make test   the whole pytest suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= demo-output
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?=

.PHONY: venv demo test browser slicer-packages bench clean

# Torch is installed first and pinned, so that nothing pulls a newer one. On our machines pip
# finds the CPU wheel of 2.13.0 on disk (pip's find-links); elsewhere plain PyPI serves the CUDA
# build (several GB): set TORCH_INDEX to PyTorch's CPU wheel index to get the small CPU build.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/python -m VirtualContrastTraining demo --out $(DEMO)

test: venv browser slicer-packages
	$(BIN)/python -m pytest -q

# Slicer 5.10's own pydicom (2.4.4) for Testing/fresh_slicer.py, whose child interpreters run the module's
# in-process code with a fresh Slicer's packages: pip --no-deps into build/slicer-packages (seconds, once).
slicer-packages: venv
	$(BIN)/python Testing/fresh_slicer.py

# Testing/test_report_browser.py opens the HTML report in Debian's chromium (headless, via playwright).
# Installed here when absent and we are root with apt-get; otherwise that test is skipped. Never fails the build.
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
			|| echo "chromium could not be installed: the browser test will be skipped"; \
	else echo "no /usr/bin/chromium and no root apt-get to install it: the browser test will be skipped"; fi

bench: venv
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_synthesis.py

clean:
	rm -rf $(VENV) $(DEMO)
