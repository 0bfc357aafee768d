# The two commands of the README: `make demo` (main job) and `make test` (the suite).
# Each one creates .venv and installs everything it needs, torch pinned to the CPU build.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-avx2 test-fast fuzz lint bench clean cross-tools llama-check

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[torch,data,dev,gpu,tune]'
	touch $(STAMP)

install: $(STAMP)

# The main job: train the digits MLP (ternary QAT + fp32 baseline), freeze, report.
demo: $(STAMP)
	$(VENV)/bin/tritium train examples/mlp.tri --out runs/mlp

# llama.cpp's leg of the Hugging Face round trip (tests/e2e/test_llama_cpp_roundtrip.py):
# `llama_logits` (benchmarks/llama_check/), llama.cpp's library and a small program of ours,
# built once per CPU from the pinned llama-cpp-python sdist (pip downloads it; cmake and a C++
# compiler; about a minute on 2 cores, cached under the cache root). Prints its path.
LLAMA_CHECK := $(PY) benchmarks/gguf_parity.py --build-only
llama-check: $(STAMP)
	@$(LLAMA_CHECK)

test: $(STAMP) cross-tools
	$(VENV)/bin/ruff check src tests benchmarks
	exe="$$($(LLAMA_CHECK))" && TRITIUM_LLAMA_CHECK="$$exe" $(PY) -m pytest -q -n 2

# The suite as an AVX2-only x86-64 machine (AMD Zen 3 class: AVX2 + FMA, no AVX-512) runs it,
# on any x86-64 machine: Tritium's kernels capped at their AVX2 path (TRITIUM_CPU_MAX_ISA hides
# the AVX-512 CPU flags, so `every_isa` runs avx2 and scalar and no AVX-512 extension is built
# in) and the libraries' own kernels capped too: ATen's dispatch (ATEN_CPU_CAPABILITY), oneDNN
# (ONEDNN_MAX_CPU_ISA), MKL (MKL_ENABLE_INSTRUCTIONS) and numpy's OpenBLAS (OPENBLAS_CORETYPE;
# Zen runs its Haswell kernels), so float results round as there. By default the tests whose
# float results depend on those kernels (AVX2_TESTS; CI runs these after `make test` on an
# AVX-512 machine); `make test-avx2 AVX2_TESTS=tests AVX2_SKIP=` runs the whole suite so.
# See "Testing on other machines" in docs/architecture.md.
AVX2_ENV := TRITIUM_CPU_MAX_ISA=avx2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 \
            MKL_ENABLE_INSTRUCTIONS=AVX2 OPENBLAS_CORETYPE=Haswell
AVX2_TESTS ?= tests/unit/runtime tests/unit/driver tests/unit/tune tests/e2e
# The tuner's Triton-interpreter tests (the configs interpreted on numpy: int8 results exact,
# fp32 ones within tolerance; 4 CPU-minutes on a 2-core Zen 4 guest) run once, in `make test`
# (AVX2_SKIP= runs them here too).
AVX2_SKIP ?= --ignore=tests/unit/tune/test_triton_run.py
test-avx2: $(STAMP)
	exe="$$($(LLAMA_CHECK))" && TRITIUM_LLAMA_CHECK="$$exe" \
	    $(AVX2_ENV) $(PY) -m pytest -q -n 2 $(AVX2_SKIP) $(AVX2_TESTS)

# The aarch64 cross compiler and qemu-user for the NEON kernel test
# (tests/unit/backends/cpu/test_neon_cross.py). Installed only when missing, as root, with apt-get;
# anywhere else this prints why it is skipped and that test skips with the install command.
CROSS_APT := gcc-aarch64-linux-gnu qemu-user
cross-tools:
	@if command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 && command -v qemu-aarch64 >/dev/null 2>&1; then \
	    echo "cross-tools: aarch64-linux-gnu-gcc and qemu-aarch64 are installed"; \
	elif [ "$$(id -u)" != 0 ]; then \
	    echo "cross-tools: skipped (not root); the NEON cross test will skip. To run it: sudo apt-get install -y $(CROSS_APT)"; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	    echo "cross-tools: skipped (no apt-get); the NEON cross test will skip. It needs aarch64-linux-gnu-gcc and qemu-aarch64 on PATH"; \
	else \
	    echo "cross-tools: apt-get install -y $(CROSS_APT)"; \
	    { DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(CROSS_APT) >/dev/null; } || \
	    echo "cross-tools: apt-get failed; the NEON cross test will skip"; \
	fi

test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not slow"

# The long fuzzing run (20,000+ cases per target, fresh random draws); CI runs a shorter one
# with fixed draws. It runs in chunks of FUZZ_CHUNK cases, each a new pytest run with its
# own random seed: hypothesis keeps what it explored in memory for the length of one run
# (one run of 20,000 large programs grew a worker past 11 GB), so chunks bound the memory.
FUZZ_CASES ?= 20000
FUZZ_CHUNK ?= 2000
fuzz: $(STAMP)
	@failed=0; done=0; while [ $$done -lt $(FUZZ_CASES) ]; do \
	    echo "fuzz: cases $$done..$$((done + $(FUZZ_CHUNK))) of $(FUZZ_CASES) per target"; \
	    TRITIUM_FUZZ_EXAMPLES=$(FUZZ_CHUNK) TRITIUM_HYPOTHESIS=explore \
	        $(PY) -m pytest -q -n 2 -p no:cacheprovider tests/property -k fuzz || failed=1; \
	    done=$$((done + $(FUZZ_CHUNK))); \
	done; exit $$failed

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/frontend.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
