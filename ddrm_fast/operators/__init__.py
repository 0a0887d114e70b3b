"""Degradation operators H with DDRM's SVD interface and a natural-layout ``H(x)``."""
from .base import LinearOperator
from .group import GroupOperator, Denoise, Inpaint, SuperRes, Colorize
from .kronecker import Kronecker
from .separable import SeparableOperator, Blur, SRBicubic, Resize, resize_matrix, KERNELS_1D
from .convolution import Convolution
from .cs import WalshHadamardCS
from .dense import Dense
from .check import check, OperatorCheckError

__all__ = ["LinearOperator", "GroupOperator", "Denoise", "Inpaint", "SuperRes", "Colorize", "SeparableOperator",
           "Blur", "SRBicubic", "WalshHadamardCS", "Dense", "Kronecker", "Resize", "Convolution", "resize_matrix",
           "KERNELS_1D", "check", "OperatorCheckError"]
