"""Build of ddrm_fast._C (metadata lives in pyproject.toml).

Environment flags:
  DDRM_FAST_SKIP_EXT=1       pure Python (the reference backend only)
  DDRM_FAST_CUDA=auto|0|1    CUDA kernels: auto = when torch has CUDA and a CUDA toolkit is found (no GPU needed)
"""
import os

from setuptools import setup

TORCH_MIN = "2.4"  # torch.library.register_fake
CSRC = "csrc"


def _extensions():
    if os.environ.get("DDRM_FAST_SKIP_EXT", "0") == "1":
        return [], {}
    import torch
    from packaging.version import Version
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    if Version(torch.__version__.split("+")[0]) < Version(TORCH_MIN):
        raise SystemExit(f"ddrm_fast needs torch >= {TORCH_MIN}, found {torch.__version__}")
    mode = os.environ.get("DDRM_FAST_CUDA", "auto")
    if mode not in ("auto", "0", "1"):
        raise SystemExit(f"DDRM_FAST_CUDA must be auto, 0 or 1, got {mode!r}")
    cuda_possible = torch.version.cuda is not None and CUDA_HOME is not None
    if mode == "1" and not cuda_possible:
        raise SystemExit("DDRM_FAST_CUDA=1 but torch was built without CUDA or no CUDA toolkit was found")
    with_cuda = cuda_possible and mode != "0"

    sources = [f"{CSRC}/ops.cpp", f"{CSRC}/kernels/spectral_step_cpu.cpp", f"{CSRC}/kernels/group_step_cpu.cpp"]
    # the CPU loops vectorise only when sqrtf need not set errno and a division may be computed where its result is
    # not selected: the kernels read no errno and enable no floating-point traps
    cxx = ["-O3", "-std=c++17", "-fno-math-errno", "-fno-trapping-math"]
    link = []
    if torch.backends.openmp.is_available():
        # at::parallel_for is an inline OpenMP template: without -fopenmp here it silently runs on one thread
        cxx.append("-fopenmp")
        link.append("-fopenmp")
    if with_cuda:
        sources += [f"{CSRC}/ops_cuda.cpp", f"{CSRC}/kernels/spectral_step_cuda.cu",
                    f"{CSRC}/kernels/group_step_cuda.cu"]
        args = {"cxx": cxx + ["-DDDRM_FAST_WITH_CUDA"], "nvcc": ["-O3", "-std=c++17", "-DDDRM_FAST_WITH_CUDA"]}
        ext = CUDAExtension("ddrm_fast._C", sources, extra_compile_args=args, extra_link_args=link,
                            include_dirs=[os.path.abspath(CSRC)])
    else:
        ext = CppExtension("ddrm_fast._C", sources, extra_compile_args={"cxx": cxx}, extra_link_args=link,
                           include_dirs=[os.path.abspath(CSRC)])
    return [ext], {"build_ext": BuildExtension}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
