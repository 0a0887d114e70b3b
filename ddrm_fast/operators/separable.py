"""Separable operators H = H_r kron H_c, per channel: Y = H_r X H_c^T (docs/ddrm.md, "Spectral layout of each
operator").

With H_r = U_r S_r V_r^T and H_c = U_c S_c V_c^T: V^T x = V_r^T X V_c per channel (two small GEMMs) and the singular
values are s_ij = s_r,i s_c,j. Products under ``zero_threshold`` count as unmeasured (zero): their directions take
DDRM's case 3, which keeps the sampler from amplifying rounding noise by 1/s. ``H(x)`` is always the exact blur or
downsampling, not its truncation.

Spectral layout: the measured block (the first h x w coefficients of each channel) first, channel-major, then the
remaining coefficients of each channel.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from .base import LinearOperator, check_image_shape, check_ratio, check_threshold

__all__ = ["SeparableOperator", "Blur", "SRBicubic", "conv_matrix", "bicubic_matrix"]


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


def bicubic_matrix(size: int, ratio: int) -> torch.Tensor:
    """(size/ratio, size) antialiased bicubic downsampling (a = -0.5, support 2*ratio, centres at (i+0.5)r-0.5),
    with symmetric reflection at the borders; each row sums to 1. Away from the borders it equals
    ``F.interpolate(mode='bicubic', antialias=True)``."""
    out = size // ratio
    mat = torch.zeros(out, size, dtype=torch.float64)
    for i in range(out):
        centre = (i + 0.5) * ratio - 0.5
        j = torch.arange(math.floor(centre - 2 * ratio), math.ceil(centre + 2 * ratio) + 1)
        w = _cubic((j.double() - centre) / ratio)
        w = w / w.sum()
        jj = j.clone()
        # symmetric reflection: -1 -> 0, size -> size - 1
        jj = torch.where(jj < 0, -jj - 1, jj)
        jj = torch.where(jj >= size, 2 * size - 1 - jj, jj)
        mat[i].index_add_(0, jj.clamp(0, size - 1), w)
    return mat


class SeparableOperator(LinearOperator):
    """Y = H_r X H_c^T on every channel, with H_r (h, H) and H_c (w, W), h <= H, w <= W."""

    def __init__(self, image_shape: Sequence[int], H_r: torch.Tensor, H_c: torch.Tensor,
                 zero_threshold: float = 1e-3):
        self.image_shape = check_image_shape(image_shape)
        c, H, W = self.image_shape
        H_r = torch.as_tensor(H_r, dtype=torch.float64)
        H_c = torch.as_tensor(H_c, dtype=torch.float64)
        if H_r.dim() != 2 or H_r.shape[1] != H or H_r.shape[0] > H:
            raise ValueError(f"H_r must be (h, {H}) with h <= {H}, got {tuple(H_r.shape)}")
        if H_c.dim() != 2 or H_c.shape[1] != W or H_c.shape[0] > W:
            raise ValueError(f"H_c must be (w, {W}) with w <= {W}, got {tuple(H_c.shape)}")
        zero_threshold = check_threshold(zero_threshold)
        h, w = H_r.shape[0], H_c.shape[0]
        self.y_shape = (c, h, w)
        self.H_r, self.H_c = H_r.float(), H_c.float()
        U_r, s_r, Vh_r = torch.linalg.svd(H_r, full_matrices=True)
        U_c, s_c, Vh_c = torch.linalg.svd(H_c, full_matrices=True)
        self.U_r, self.U_c = U_r.float(), U_c.float()
        self.V_r, self.V_c = Vh_r.t().float(), Vh_c.t().float()
        s2 = torch.outer(s_r, s_c)
        s2 = torch.where(s2 < zero_threshold, torch.zeros_like(s2), s2).float()
        self._singulars = s2.flatten().repeat(c)
        # positions (in each channel's H x W spectral block) outside the measured h x w corner
        rest = torch.ones(H, W, dtype=torch.bool)
        rest[:h, :w] = False
        self.rest_idx = torch.nonzero(rest.flatten()).flatten()

    def _spectral_block(self, x: torch.Tensor) -> torch.Tensor:
        c, H, W = self.image_shape
        return (self.V_r.t() @ x.reshape(-1, c, H, W) @ self.V_c).reshape(x.shape[0], c, H * W)

    def Vt(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        c, H, W = self.image_shape
        _, h, w = self.y_shape
        blk = self._spectral_block(x)
        head = blk.reshape(b, c, H, W)[:, :, :h, :w].reshape(b, -1)
        if self.rest_idx.numel() == 0:
            return head
        return torch.cat([head, blk[:, :, self.rest_idx].reshape(b, -1)], dim=1)

    def V(self, vec: torch.Tensor) -> torch.Tensor:
        b = vec.shape[0]
        c, H, W = self.image_shape
        _, h, w = self.y_shape
        vec = vec.reshape(b, self.n)
        if self.rest_idx.numel() == 0:
            blk = vec.reshape(b, c, H, W)
        else:
            blk = vec.new_zeros(b, c, H, W)
            blk[:, :, :h, :w] = vec[:, : self.m].reshape(b, c, h, w)
            blk = blk.reshape(b, c, H * W).index_copy(2, self.rest_idx, vec[:, self.m:].reshape(b, c, -1))
            blk = blk.reshape(b, c, H, W)
        return (self.V_r @ blk @ self.V_c.t()).reshape(b, self.n)

    def U(self, vec: torch.Tensor) -> torch.Tensor:
        c, h, w = self.y_shape
        return (self.U_r @ vec.reshape(-1, c, h, w) @ self.U_c.t()).reshape(vec.shape[0], self.m)

    def Ut(self, y: torch.Tensor) -> torch.Tensor:
        y = self.check_y(y)
        c, h, w = self.y_shape
        return (self.U_r.t() @ y.reshape(-1, c, h, w) @ self.U_c).reshape(y.shape[0], self.m)

    def singulars(self) -> torch.Tensor:
        return self._singulars

    def H(self, x: torch.Tensor) -> torch.Tensor:
        x = self.check_x(x)
        return self.H_r.to(x.dtype) @ x @ self.H_c.t().to(x.dtype)


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
