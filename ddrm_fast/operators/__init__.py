"""Degradation operators H with DDRM's SVD interface and a natural-layout ``H(x)``."""
from .base import LinearOperator
from .group import GroupOperator, Denoise, Inpaint, SuperRes, Colorize
from .separable import SeparableOperator, Blur, SRBicubic
from .cs import WalshHadamardCS
from .dense import Dense

__all__ = ["LinearOperator", "GroupOperator", "Denoise", "Inpaint", "SuperRes", "Colorize", "SeparableOperator",
           "Blur", "SRBicubic", "WalshHadamardCS", "Dense"]
