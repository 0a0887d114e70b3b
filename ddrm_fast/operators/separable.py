"""Separable operators H = H_r kron H_c, per channel: Y = H_r X H_c^T, Kronecker operators with the identity on
channels (``kronecker.py``; docs/ddrm.md, "Spectral layout of each operator"), and the 1-D matrices they and the
command line's resize tasks are built from: zero-padded convolution and resizing with a 1-D kernel (box, bilinear,
bicubic, Lanczos-3) to any size.

Singular-value products under ``zero_threshold`` count as unmeasured (zero): their directions take DDRM's case 3,
which keeps the sampler from amplifying rounding noise by 1/s. ``H(x)`` is always the exact blur or resizing.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from .base import check_image_shape, check_ratio
from .kronecker import Kronecker

__all__ = ["SeparableOperator", "Blur", "SRBicubic", "Resize", "conv_matrix", "bicubic_matrix", "resize_matrix",
           "KERNELS_1D"]


def conv_matrix(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """The (size, size) matrix of a 1-D correlation with zero padding, as ``F.conv2d(padding=K//2)`` computes it:
    out[i] = sum_t k[t] x[i + t - K//2]."""
    k = torch.as_tensor(kernel, dtype=torch.float64).flatten()
    K = k.numel()
    i = torch.arange(size).view(-1, 1)
    j = torch.arange(size).view(1, -1)
    t = j - i + K // 2
    valid = (t >= 0) & (t < K)
    return torch.where(valid, k[t.clamp(0, K - 1)], torch.zeros((), dtype=torch.float64))


def _cubic(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    x = x.abs()
    return torch.where(x <= 1, (a + 2) * x**3 - (a + 3) * x**2 + 1,
                       torch.where(x < 2, a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a, torch.zeros_like(x)))


def _lanczos3(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x.abs() < 3, torch.sinc(x) * torch.sinc(x / 3), torch.zeros_like(x))


#: 1-D resampling kernels: (function of the distance in input pixels at scale 1, support radius)
KERNELS_1D = {
    "box": (lambda x: ((x > -0.5) & (x <= 0.5)).double(), 0.5),
    "bilinear": (lambda x: (1 - x.abs()).clamp(min=0), 1.0),
    "bicubic": (_cubic, 2.0),
    "lanczos3": (_lanczos3, 3.0),
}


def resize_matrix(size: int, out: int, kernel: str = "bicubic") -> torch.Tensor:
    """(out, size) matrix resizing a signal of ``size`` samples to ``out`` with a 1-D ``kernel`` of
    :data:`KERNELS_1D`: output i is centred at (i + 0.5) size/out - 0.5; when shrinking the kernel is stretched by
    size/out (antialiasing, as PIL and ``F.interpolate(antialias=True)`` do); symmetric reflection at the borders;
    each row sums to 1."""
    if kernel not in KERNELS_1D:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS_1D)}, got {kernel!r}")
    if out < 1 or size < 1:
        raise ValueError(f"sizes must be positive, got {size} -> {out}")
    fn, radius = KERNELS_1D[kernel]
    scale = max(size / out, 1.0)
    mat = torch.zeros(out, size, dtype=torch.float64)
    for i in range(out):
        centre = (i + 0.5) * size / out - 0.5
        j = torch.arange(math.floor(centre - radius * scale), math.ceil(centre + radius * scale) + 1)
        w = fn((j.double() - centre) / scale)
        if float(w.sum()) == 0:  # a box narrower than the sample spacing: the nearest sample
            w = (j == round(centre)).double()
        w = w / w.sum()
        # symmetric reflection: -1 -> 0, size -> size - 1 (repeated for kernels wider than the signal)
        jj = j.clone()
        for _ in range(int(radius * scale) // max(size, 1) + 2):
            jj = torch.where(jj < 0, -jj - 1, jj)
            jj = torch.where(jj >= size, 2 * size - 1 - jj, jj)
        mat[i].index_add_(0, jj.clamp(0, size - 1), w)
    return mat


def bicubic_matrix(size: int, ratio: int) -> torch.Tensor:
    """(size/ratio, size) antialiased bicubic downsampling (a = -0.5, support 2*ratio, centres at (i+0.5)r-0.5),
    with symmetric reflection at the borders; each row sums to 1. Away from the borders it equals
    ``F.interpolate(mode='bicubic', antialias=True)``."""
    return resize_matrix(size, size // ratio, "bicubic")


class SeparableOperator(Kronecker):
    """Y = H_r X H_c^T on every channel, with H_r (h, H) and H_c (w, W), h <= H, w <= W: the Kronecker operator
    with the identity on channels."""

    def __init__(self, image_shape: Sequence[int], H_r: torch.Tensor, H_c: torch.Tensor,
                 zero_threshold: float = 1e-3):
        shape = check_image_shape(image_shape)
        H_r = torch.as_tensor(H_r, dtype=torch.float64)
        H_c = torch.as_tensor(H_c, dtype=torch.float64)
        if H_r.dim() != 2 or H_r.shape[1] != shape[1] or H_r.shape[0] > shape[1]:
            raise ValueError(f"H_r must be (h, {shape[1]}) with h <= {shape[1]}, got {tuple(H_r.shape)}")
        if H_c.dim() != 2 or H_c.shape[1] != shape[2] or H_c.shape[0] > shape[2]:
            raise ValueError(f"H_c must be (w, {shape[2]}) with w <= {shape[2]}, got {tuple(H_c.shape)}")
        super().__init__(None, H_r, H_c, image_shape=shape, zero_threshold=zero_threshold)


class Resize(Kronecker):
    """Resizing every channel to ``size`` (h, w) with a 1-D kernel of :data:`KERNELS_1D` along rows and columns
    (:func:`resize_matrix`), after mixing the channels with ``A_c`` (m_c, C) when given (the luma row: a gray photo
    at a smaller size). ``kernel_1d`` is kept: the matching classical upsampling (``tasks.upsample``) uses it."""

    def __init__(self, image_shape: Sequence[int], size: Sequence[int], kernel_1d: str = "bicubic", A_c=None,
                 zero_threshold: float = 1e-3):
        shape = check_image_shape(image_shape)
        h, w = (int(v) for v in size)
        self.kernel_1d = kernel_1d
        super().__init__(A_c, resize_matrix(shape[1], h, kernel_1d), resize_matrix(shape[2], w, kernel_1d),
                         image_shape=shape, zero_threshold=zero_threshold)


class Blur(SeparableOperator):
    """Separable blur with zero boundary: ``H(x)`` equals ``F.conv2d`` of each channel with the outer product
    kernel_r kernel_c^T (cross-correlation, padding K//2 before and K-1-K//2 after).

    Args:
        kernel: 1-D taps along rows (and columns, unless ``kernel_c`` is given).
        image_shape: (C, H, W).
        kernel_c: optional 1-D taps along columns (anisotropic blur).
        zero_threshold: singular-value products below it count as unmeasured.
    """

    def __init__(self, kernel, image_shape: Sequence[int], kernel_c=None, zero_threshold: float = 1e-3):
        shape = check_image_shape(image_shape)
        k_r = self._check_kernel(kernel, "kernel")
        k_c = k_r if kernel_c is None else self._check_kernel(kernel_c, "kernel_c")
        self.kernel_r, self.kernel_c = k_r.float(), k_c.float()
        super().__init__(shape, conv_matrix(k_r, shape[1]), conv_matrix(k_c, shape[2]), zero_threshold)

    @staticmethod
    def _check_kernel(kernel, name: str) -> torch.Tensor:
        k = torch.as_tensor(kernel, dtype=torch.float64)
        if k.dim() != 1 or k.numel() == 0:
            raise ValueError(f"{name} must be a non-empty 1-D sequence of taps, got shape {tuple(k.shape)}")
        if not bool(torch.isfinite(k).all()):
            raise ValueError(f"{name} must be finite")
        return k


class SRBicubic(SeparableOperator):
    """Bicubic (antialiased, a = -0.5) downsampling by ``ratio``: y is (B, C, H/ratio, W/ratio)."""

    def __init__(self, ratio: int, image_shape: Sequence[int], zero_threshold: float = 1e-3):
        shape = check_ratio(ratio, image_shape)
        self.ratio = ratio
        super().__init__(shape, bicubic_matrix(shape[1], ratio), bicubic_matrix(shape[2], ratio), zero_threshold)
