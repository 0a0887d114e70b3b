"""ddrm_fast: fast, trustworthy DDRM (Kawar et al. 2022) image restoration for PyTorch."""
from . import operators, schedules
from .diffusion import GaussianDiffusion
from .sampler import ddrm_sample
from . import compat  # noqa: E402,F401  (registers ddrm_sample's noise="compat", the original's draws)

__version__ = "0.1.0"
__all__ = ["ddrm_sample", "GaussianDiffusion", "operators", "schedules", "__version__"]
