# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.framemark-installed
# The CPU build of torch; an unpinned torch would pull a multi-GB CUDA build. pyproject.toml keeps the range open.
TORCH  ?= torch==2.13.0
# bench/robustness.py's peers; --no-deps because it requires opencv-python, which would clobber the headless cv2
PEERS  ?= invisible-watermark==0.2.0

.PHONY: install demo test test-fast typecheck bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps $(PEERS)
	touch $(STAMP)

demo: install
	@mkdir -p out
	$(BIN)/framemark generate "a red circle moving left on a textured background" --seed 7 -o out/demo.mp4
	@echo "demo clip: $(CURDIR)/out/demo.mp4"
	$(BIN)/framemark verify out/demo.mp4

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

# mypy over a link tree with the import layout (package-dir is invisible to type checkers: docs/architecture.md)
typecheck: install
	$(BIN)/python -m pip install --quiet "mypy>=1.10"
	$(BIN)/python tools/typecheck_tree.py
	cd build/typecheck && ../../$(BIN)/mypy --config-file ../../pyproject.toml

bench: install
	$(BIN)/python bench/generator.py --json

clean:
	rm -rf out .pytest_cache build/typecheck
