"""A dense matrix H (m, N) for small problems: the SVD is computed once with torch.linalg.svd."""
from __future__ import annotations

from typing import Sequence

import torch

from .base import LinearOperator, check_image_shape, check_threshold

__all__ = ["Dense"]


class Dense(LinearOperator):
    """y = H x with an explicit (m, N) matrix, m <= N = C*H*W; y is (B, m).

    Singular values under ``zero_threshold`` count as unmeasured (the original GeneralH uses 1e-3 too).
    """

    def __init__(self, matrix: torch.Tensor, image_shape: Sequence[int], zero_threshold: float = 1e-3):
        self.image_shape = check_image_shape(image_shape)
        zero_threshold = check_threshold(zero_threshold)
        self.zero_threshold = zero_threshold  # operators.check allows this truncation of H
        mat = torch.as_tensor(matrix)
        if mat.is_complex():
            raise ValueError("matrix must be real")
        if mat.dim() != 2 or mat.shape[1] != self.n or mat.shape[0] > self.n or mat.shape[0] < 1:
            raise ValueError(f"matrix must be (m, {self.n}) with 1 <= m <= {self.n} for images {self.image_shape}, "
                             f"got {tuple(mat.shape)}")
        if not bool(torch.isfinite(mat).all()):
            raise ValueError("matrix must be finite")
        self.matrix = mat.float()
        u, s, vh = torch.linalg.svd(mat.double(), full_matrices=True)
        self._U = u.float()
        self._V = vh.t().float()
        self._singulars = torch.where(s < zero_threshold, torch.zeros_like(s), s).float()
        self.y_shape = (mat.shape[0],)

    def V(self, vec: torch.Tensor) -> torch.Tensor:
        return vec.reshape(vec.shape[0], self.n) @ self._V.t()

    def Vt(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], self.n) @ self._V

    def U(self, vec: torch.Tensor) -> torch.Tensor:
        return vec.reshape(vec.shape[0], self.m) @ self._U.t()

    def Ut(self, y: torch.Tensor) -> torch.Tensor:
        return self.check_y(y) @ self._U

    def singulars(self) -> torch.Tensor:
        return self._singulars

    def H(self, x: torch.Tensor) -> torch.Tensor:
        x = self.check_x(x)
        return x.reshape(x.shape[0], self.n) @ self.matrix.t().to(x.dtype)
