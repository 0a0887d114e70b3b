"""ddrm_fast: fast, trustworthy DDRM (Kawar et al. 2022) image restoration for PyTorch."""
from . import operators, schedules
from .diffusion import GaussianDiffusion
from .sampler import ddrm_sample

__version__ = "0.1.0"
__all__ = ["ddrm_sample", "GaussianDiffusion", "operators", "schedules", "__version__"]
