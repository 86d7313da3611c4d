# The two commands: `make train` and `make test`. Each creates .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ONNX_STAMP := $(VENV)/.onnx-stamp
SERVE_STAMP := $(VENV)/.serve-stamp
# Tests run in TEST_WORKERS processes (pytest-xdist, whole files per process), one OpenMP
# thread each, so that the two cores of CI are both busy; TEST_WORKERS=0 runs them in one.
TEST_WORKERS ?= 2
PYTEST := OMP_NUM_THREADS=1 MXNET_CPU_WORKER_NTHREADS=1 $(BIN)/python -m pytest -q \
	-n $(TEST_WORKERS) --dist loadfile
# onnxruntime 1.15.1 (cp311) declares numpy>=1.24.2 but runs on 1.23.5, and mxnet 1.9.1 needs
# numpy<1.24: install it without dependencies and keep numpy pinned in every pip command.
NUMPY_PIN := 'numpy>=1.21,<1.24'
ORT_PACKAGES := onnxruntime==1.15.1 coloredlogs humanfriendly flatbuffers sympy mpmath packaging

.PHONY: train test lint bench clean onnx test-onnx venv-ort serve test-serve

$(STAMP): setup.cfg pyproject.toml requirements.txt
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "mxlstm needs Python 3.11, got " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	PYTHONWARNINGS='ignore:Editable installation:UserWarning' \
		$(BIN)/python -m pip install --quiet -e '.[test,plot]' $(NUMPY_PIN)
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/mxlstm train --task digits --out runs/digits-$$(date +%Y%m%d-%H%M%S)

test: $(STAMP)
	$(BIN)/ruff check .
	$(PYTEST)

# Optional: onnx + onnxruntime for `mxlstm export --onnx` and tests/deploy/test_onnx.py.
onnx: $(ONNX_STAMP)

# The tests that need the optional ONNX packages (marked `onnx`; they skip in `make test`
# without the packages).
test-onnx: $(ONNX_STAMP)
	$(PYTEST) -m onnx tests/deploy

# Optional: .venv-ort, onnxruntime + numpy and no mxnet, where tests/deploy/test_ort_venv.py
# runs the standalone predictor (created there on first use when missing).
venv-ort: $(STAMP)
	$(BIN)/python -m mxlstm.deploy.ort_venv

$(ONNX_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet onnx==1.14.1 "protobuf>=3.20.2,<=7.36.2" $(NUMPY_PIN)
	$(BIN)/python -m pip install --quiet --no-deps $(ORT_PACKAGES) $(NUMPY_PIN)
	$(BIN)/python -c 'import numpy, onnx, onnxruntime; v = numpy.__version__; assert tuple(map(int, v.split(".")[:2])) < (1, 24), v'
	touch $(ONNX_STAMP)

# Optional: Multi Model Server + model-archiver (the [serve] extra) for `mxlstm export --mar`
# and `mxlstm serve`; the server also needs Java 8+ on PATH (these machines have Java 17).
serve: $(SERVE_STAMP)

# The tests that start Multi Model Server (they skip in `make test` without the extra or Java).
test-serve: $(SERVE_STAMP)
	$(PYTEST) tests/serve

$(SERVE_STAMP): $(STAMP)
	PYTHONWARNINGS='ignore:Editable installation:UserWarning' \
		$(BIN)/python -m pip install --quiet -e '.[test,plot,serve]' $(NUMPY_PIN)
	$(BIN)/python -c 'import numpy, mms, model_archiver; v = numpy.__version__; assert tuple(map(int, v.split(".")[:2])) < (1, 24), v'
	touch $(SERVE_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m mxlstm.bench setup-torch
	$(BIN)/python -m mxlstm.bench all --pairs 5 --no-static-shape --out docs/benchmarks.md

clean:
	rm -rf $(VENV) runs .pytest_cache
