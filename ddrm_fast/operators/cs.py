"""Walsh-Hadamard compressed sensing: y keeps M = HW/ratio orthonormal Walsh-Hadamard coefficients per channel."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .base import LinearOperator, check_image_shape

__all__ = ["WalshHadamardCS", "fwht"]


def fwht(a: torch.Tensor) -> torch.Tensor:
    """Orthonormal fast Walsh-Hadamard transform over the last dimension (a power of two); its own inverse."""
    n = a.shape[-1]
    if n & (n - 1):
        raise ValueError(f"the Walsh-Hadamard transform needs a power-of-two length, got {n}")
    lead = a.shape[:-1]
    h = 1
    while h < n:
        pairs = a.reshape(*lead, n // (2 * h), 2, h)
        lo, hi = pairs[..., 0, :], pairs[..., 1, :]
        a = torch.stack([lo + hi, lo - hi], dim=-2).reshape(*lead, n)
        h *= 2
    return a / n**0.5


class WalshHadamardCS(LinearOperator):
    """Keep the coefficients ``perm[:HW // ratio]`` of each channel's orthonormal Walsh-Hadamard transform.

    Args:
        ratio: compression ratio; must divide H*W, and H*W must be a power of two.
        image_shape: (C, H, W).
        perm: a permutation of range(H*W) choosing the kept coefficients (default: a random one from ``seed``).
        seed: seed of the default permutation.
    y is (B, C, HW // ratio); U = I.
    """

    identity_U = True

    def __init__(self, ratio: int, image_shape: Sequence[int], perm: Optional[torch.Tensor] = None, seed: int = 0):
        self.image_shape = check_image_shape(image_shape)
        c, h, w = self.image_shape
        hw = h * w
        if hw & (hw - 1):
            raise ValueError(f"image_shape: H*W must be a power of two for the Walsh-Hadamard transform, got {hw}")
        if not isinstance(ratio, int) or isinstance(ratio, bool) or ratio < 1 or hw % ratio:
            raise ValueError(f"ratio must be a positive int dividing H*W={hw}, got {ratio!r}")
        if perm is None:
            perm = torch.randperm(hw, generator=torch.Generator().manual_seed(seed))
        perm = torch.as_tensor(perm, dtype=torch.long).flatten()
        if perm.numel() != hw or not bool((perm.sort().values == torch.arange(hw)).all()):
            raise ValueError(f"perm must be a permutation of range({hw})")
        self.ratio = ratio
        self.perm = perm
        self.inv_perm = torch.argsort(perm)
        self.y_shape = (c, hw // ratio)

    def Vt(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        c, h, w = self.image_shape
        coeff = fwht(x.reshape(b, c, h * w))[:, :, self.perm]
        keep = self.y_shape[1]
        return torch.cat([coeff[:, :, :keep].reshape(b, -1), coeff[:, :, keep:].reshape(b, -1)], dim=1)

    def V(self, vec: torch.Tensor) -> torch.Tensor:
        b = vec.shape[0]
        c, h, w = self.image_shape
        vec = vec.reshape(b, self.n)
        coeff = torch.cat([vec[:, : self.m].reshape(b, c, -1), vec[:, self.m:].reshape(b, c, -1)], dim=2)
        return fwht(coeff[:, :, self.inv_perm]).reshape(b, self.n)

    def U(self, vec: torch.Tensor) -> torch.Tensor:
        return vec.reshape(vec.shape[0], self.m)

    def Ut(self, y: torch.Tensor) -> torch.Tensor:
        return self.check_y(y)

    def singulars(self) -> torch.Tensor:
        return torch.ones(self.m, device=self.perm.device)
