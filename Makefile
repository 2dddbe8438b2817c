# The README's two commands are `make demo` and `make test`; each sets up .venv first when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST := $(BIN)/python -m pytest

.PHONY: setup demo test test-runtime test-slow test-netns test-arm64 test-examples bench lint proto clean

setup: $(STAMP)

# Reinstall when the dependency pins change. torch==2.13.0 is pinned so pip takes the CPU wheel.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/python examples/formats/run.py
	$(BIN)/python examples/split/run.py
	$(BIN)/python examples/streaming/run.py

# Default suite: everything but the slow, netns, arm64 and examples markers (includes the torch-free runtime environment).
test: setup
	$(PYTEST) -m "not slow and not netns and not arm64 and not examples"

# Every example script end to end with its quickest settings (about 7 min on a quiet 2-core machine).
test-examples: setup
	$(PYTEST) -m examples tests/test_examples.py

# Only the torch-free environment: installs the package with onnxruntime + tflite-runtime (numpy<2)
# in .venv-runtime and runs bundles exported by the main environment.
test-runtime: setup
	$(PYTEST) -m runtime_env

test-slow: setup
	$(PYTEST) -m slow

# Split inference with each worker in its own Linux network namespace (needs root and iproute2).
test-netns: setup
	$(PYTEST) -m netns

# Bundles exported here run on an emulated arm64 CPU (Cortex-A76, Debian arm64 Python 3.11, aarch64 wheels) and
# are compared with x86 and PyTorch; one worker serves a shard from it. Builds build/arm64 first (root; qemu
# and the sysroot come from Debian's archive, the wheels from PyPI), then reuses it.
test-arm64: setup
	command -v ip >/dev/null || (apt-get update -q && apt-get install -y -q iproute2)
	$(BIN)/python -m tools.arm64.environment build
	$(PYTEST) -m arm64 tests/arm64

# `edgekit bench` (export, verify, profile with energy) for every built-in model at full size.
bench: setup
	for model in $$($(BIN)/python -c "from edgekit.models import list_models; print(*list_models())"); do \
		$(BIN)/edgekit bench $$model -o build/bench --json build/bench/$$model.json || exit 1; \
	done

lint: setup
	$(BIN)/ruff check edgekit tests tools benchmarks examples
	$(BIN)/ruff format --check edgekit tests tools benchmarks examples

# Regenerate the gRPC modules after editing a .proto (they are committed): the split worker's, and the Open
# Inference Protocol's that `edgekit serve` speaks.
proto: setup
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. edgekit/splitter/proto/split.proto
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. edgekit/serving/proto/inference.proto

clean:
	rm -rf build .pytest_cache .venv-runtime
