"""ddrm_fast: fast, trustworthy DDRM (Kawar et al. 2022) image restoration for PyTorch."""
from . import operators, schedules
from .diffusion import GaussianDiffusion
from .sampler import Posterior, ddrm_sample, posterior

__version__ = "0.1.0"
__all__ = ["ddrm_sample", "posterior", "Posterior", "GaussianDiffusion", "operators", "schedules", "__version__"]
