#!/usr/bin/env bash
# On the GPU machine: build the extension with CUDA, run the test suite (CUDA and Triton included) and the CUDA
# kernel tests under compute-sanitizer. Logs go to $OUT (or ./gpu_logs).
# The system g++ is used on purpose: a compiler wrapper that links libstdc++ statically makes the extension's
# error messages crash against torch's shared libstdc++ (seen on the project's GPU machine).
set -uo pipefail
OUT=${OUT:-gpu_logs}; mkdir -p "$OUT"
export CXX=${DDRM_FAST_CXX:-/usr/bin/g++} CC=${DDRM_FAST_CC:-/usr/bin/gcc}
python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, torch.cuda.get_device_name())"
rm -rf build ddrm_fast/_C*.so
DDRM_FAST_CUDA=1 python3 setup.py build_ext --inplace > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
python3 -c "import ddrm_fast.ops as o; assert o.has_cuda(), o.extension_error(); print('extension: cpu + cuda')"
python3 -m pytest -q -p no:cacheprovider tests 2>&1 | tee "$OUT/pytest.log" | tail -4
compute-sanitizer --tool memcheck --target-processes all python3 -m pytest -q -p no:cacheprovider tests/kernels tests/test_ops.py -k "cuda" 2>&1 | tee "$OUT/sanitizer.log" | tail -3
# end-to-end throughput and directory restoration, when asked (GPU_BENCH=1): see benchmarks/gpu_bench.sh for stages
if [ "${GPU_BENCH:-0}" = "1" ]; then
  bash benchmarks/gpu_bench.sh e2e b32 b64 dataset
fi
