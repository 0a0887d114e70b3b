"""`make cuda-build`'s last step: the extension built with CUDA loads (on a machine with or without a GPU) and
registers CPU, CUDA and Meta kernels for every op of ddrm_fast.ops. Run from the build folder, with the CUDA build
of torch; not a pytest module (it needs that build)."""
import sys

import torch

import ddrm_fast.ops as ops

if torch.version.cuda is None:
    sys.exit("cuda-build check: this torch has no CUDA (run it with the CUDA build of torch)")
if ops.extension_error() is not None:
    sys.exit(f"cuda-build check: ddrm_fast._C did not load: {ops.extension_error()}")
if not ops._C.built_with_cuda():  # noqa: SLF001 - the extension's own flag
    sys.exit("cuda-build check: ddrm_fast._C was built without its CUDA kernels")
missing = [f"{name}/{key}" for name in ops.OPS for key in ("CPU", "CUDA", "Meta")
           if not torch._C._dispatch_has_kernel_for_dispatch_key(f"ddrm_fast::{name}", key)]
if missing:
    sys.exit(f"cuda-build check: no kernel registered for {', '.join(missing)}")
print(f"CUDA build: ddrm_fast._C loads with torch {torch.__version__} (CUDA {torch.version.cuda}); CPU, CUDA and Meta "
      f"kernels registered for {', '.join(ops.OPS)}")
