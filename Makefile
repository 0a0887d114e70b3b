# Set-up and checks. `make demo` and `make test` each do all set-up on a fresh machine: a virtual environment,
# torch==2.13.0 only when no torch is importable there (never a CUDA torch pulled by a dependency), then the package.
VENV   ?= .venv
PY     := $(VENV)/bin/python
CMAKE_BUILD ?= build/cmake

.PHONY: setup demo test pytest triton-test ctest cuda-binding-check cuda-build clean

setup: $(VENV)/.ddrm_fast_installed

$(VENV)/.ddrm_fast_installed: setup.py pyproject.toml $(wildcard csrc/*.cpp csrc/*.h csrc/kernels/*)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q setuptools wheel packaging ninja
	$(PY) -m pip install -q --no-build-isolation -e ".[test,web]"
	$(PY) -c "import triton" 2>/dev/null || $(PY) -m pip install -q triton
	# test oracle: guided-diffusion's own UNetModel (its blobfile dependency is only for its data loading)
	$(PY) -c "import guided_diffusion.unet" 2>/dev/null || $(PY) -m pip install -q --no-deps guided-diffusion-sdk
	touch $@

# restore a bundled photo (held out from the embedded model's training) with the embedded model: the bundled motion
# blur plus noise, against Wiener deconvolution with the same kernel
demo: setup
	$(PY) -m ddrm_fast restore ddrm_fast/data/coffee.png --task deblur --kernel ddrm_fast/data/motion_blur.png --sigma-y 0.05 -o demo_out --compare demo_out/compare.png

test: setup pytest triton-test ctest cuda-binding-check

# -rs: the summary lists every skipped test with its reason (an oracle or a device that was missing is visible)
pytest: setup
	$(PY) -m pytest -q -rs tests

# Triton kernels on the CPU: the interpreter must be chosen before triton is imported, so its own process
triton-test: setup
	TRITON_INTERPRET=1 $(PY) -m pytest -q -rs tests/kernels

# the torch-free kernel core alone: C++ unit tests, and the .cu files compiled when nvcc is present
ctest:
	cmake -S . -B $(CMAKE_BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(CMAKE_BUILD) -j 2
	ctest --test-dir $(CMAKE_BUILD) --output-on-failure

# the CUDA binding (csrc/ops_cuda.cpp) type-checked against torch's CUDA headers, which the CPU wheel ships too (all
# but one generated macro header: a stub, searched last); needs only the CUDA toolkit's headers, skipped without nvcc
cuda-binding-check: setup
	@if command -v nvcc >/dev/null; then \
	  cuda_inc=$$(nvcc --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$$ INCLUDES="\(.*\)"/\1/p'); \
	  mkdir -p $(CMAKE_BUILD)/stub/c10/cuda/impl; \
	  echo '#pragma once' > $(CMAKE_BUILD)/stub/c10/cuda/impl/cuda_cmake_macros.h; \
	  $(CXX) -std=c++17 -w -fsyntax-only \
	    $$($(PY) -c "import torch.utils.cpp_extension as c; print(' '.join('-I' + p for p in c.include_paths()))") \
	    $$cuda_inc -I$$($(PY) -c "import sysconfig; print(sysconfig.get_paths()['include'])") \
	    -Icsrc -I$(CMAKE_BUILD)/stub csrc/ops_cuda.cpp && echo "CUDA binding: type-checks"; \
	else echo "no nvcc: CUDA binding check skipped"; fi

# the whole extension compiled with its CUDA kernels, without a GPU: a virtual environment of its own ($(CUDA_VENV))
# with the package index's CUDA build of torch (about 5 GB, downloaded once; --isolated skips the pip configuration
# that points at the local CPU wheel), nvcc's toolkit as CUDA_HOME, built into build/cuda (never over the CPU build
# in ddrm_fast/), then loaded to check that CPU, CUDA and Meta kernels are registered for every op. Not part of
# `make test` or CI: it downloads gigabytes.
CUDA_VENV ?= .venv-cuda
CUDA_ARCH ?= 9.0
cuda-build:
	command -v nvcc >/dev/null || { echo "cuda-build needs nvcc (the CUDA toolkit)"; exit 1; }
	test -x $(CUDA_VENV)/bin/python || python3 -m venv $(CUDA_VENV)
	$(CUDA_VENV)/bin/python -c "import torch; assert torch.version.cuda" 2>/dev/null || \
	  $(CUDA_VENV)/bin/pip --isolated install -q torch==2.13.0
	$(CUDA_VENV)/bin/pip --isolated install -q setuptools wheel packaging ninja numpy
	rm -rf build/cuda
	CUDA_HOME=$${CUDA_HOME:-$$(nvcc --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$$ TOP=//p')} \
	  DDRM_FAST_CUDA=1 TORCH_CUDA_ARCH_LIST="$(CUDA_ARCH)" MAX_JOBS=2 \
	  $(CUDA_VENV)/bin/python setup.py -q build --build-base build/cuda --build-lib build/cuda/lib
	cd build/cuda/lib && PYTHONPATH=. $(abspath $(CUDA_VENV))/bin/python $(abspath tests/cuda_build_check.py)

clean:
	rm -rf build $(CMAKE_BUILD) ddrm_fast/_C*.so *.egg-info
