"""Kronecker operators H = A_c (x) A_h (x) A_w on images (C, H, W) (docs/ddrm.md, "Kronecker operators").

With A = U_A S_A V_A^T for each factor, H = (U_c (x) U_h (x) U_w)(S_c (x) S_h (x) S_w)(V_c (x) V_h (x) V_w)^T: V^T x
is three small matrix products (one per axis) and the singular values are the products s_c,i s_h,j s_w,k. Products
under ``zero_threshold`` count as unmeasured (zero). No matrix larger than one factor is ever formed.

Spectral layout: the measured block (the first m_c x m_h x m_w coefficients, in (c, h, w) order) first, then the
remaining coefficients in (c, h, w) order. A factor given as None is the identity (no product along that axis).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .base import LinearOperator, check_image_shape, check_threshold

__all__ = ["Kronecker"]

_AXES = ("A_c", "A_h", "A_w")


def _along(t: torch.Tensor, mats: Sequence[Optional[torch.Tensor]]) -> torch.Tensor:
    """t (B, C, H, W) times mats[0] along C, mats[1] along H, mats[2] along W (each (out, in), None: identity)."""
    m_c, m_h, m_w = mats
    if m_w is not None:
        t = t @ m_w.t().to(t.dtype)
    if m_h is not None:
        t = m_h.to(t.dtype) @ t
    if m_c is not None:
        t = torch.einsum("oc,bchw->bohw", m_c.to(t.dtype), t)
    return t


class Kronecker(LinearOperator):
    """y = x x_c A_c x_h A_h x_w A_w: A_c (m_c, C) mixes channels, A_h (m_h, H) and A_w (m_w, W) act on the rows and
    columns of every channel; y is (B, m_c, m_h, m_w). Any factor may be None (the identity), its size then taken
    from ``image_shape``. Each factor needs at most as many rows as columns.

    Separable blur (``Blur``), bicubic downsampling (``SRBicubic``), resizing with any 1-D kernel and any output size,
    anisotropic operators and joint ones (colourising a low-resolution gray photo: A_c the luma row, A_h, A_w
    downsampling) are instances.
    """

    def __init__(self, A_c=None, A_h=None, A_w=None, image_shape: Optional[Sequence[int]] = None,
                 zero_threshold: float = 1e-3):
        factors = [None if a is None else torch.as_tensor(a, dtype=torch.float64) for a in (A_c, A_h, A_w)]
        sizes = []
        for axis, (name, a) in enumerate(zip(_AXES, factors)):
            if a is None:
                if image_shape is None:
                    raise ValueError(f"{name} is the identity (None): give image_shape for its size")
                sizes.append(int(check_image_shape(image_shape)[axis]))
                continue
            if a.is_complex() or a.dim() != 2 or a.shape[0] < 1 or a.shape[0] > a.shape[1]:
                raise ValueError(f"{name} must be a real (m, n) matrix with 1 <= m <= n, got shape {tuple(a.shape)}")
            if not bool(torch.isfinite(a).all()):
                raise ValueError(f"{name} must be finite")
            sizes.append(a.shape[1])
        self.image_shape = check_image_shape(sizes)
        if image_shape is not None and check_image_shape(image_shape) != self.image_shape:
            raise ValueError(f"image_shape {tuple(image_shape)} does not match the factors' columns {self.image_shape}")
        zero_threshold = check_threshold(zero_threshold)
        self.zero_threshold = zero_threshold  # operators.check allows this truncation of H
        self.factors = tuple(None if a is None else a.float() for a in factors)
        self.y_shape = tuple(n if a is None else a.shape[0] for a, n in zip(factors, sizes))
        # each factor's SVD; the identity's is (None, ones, None): no product along that axis
        svds = [(None, torch.ones(n, dtype=torch.float64), None) if a is None else torch.linalg.svd(a)
                for a, n in zip(factors, sizes)]
        self.left = [None if u is None else u.float() for u, _, _ in svds]
        self.right = [None if vh is None else vh.t().float() for _, _, vh in svds]
        values = [s for _, s, _ in svds]
        s3 = values[0].view(-1, 1, 1) * values[1].view(1, -1, 1) * values[2].view(1, 1, -1)
        self._singulars = torch.where(s3 < zero_threshold, torch.zeros_like(s3), s3).float().flatten()
        # positions of the (c, h, w) spectral block outside the measured corner
        rest = torch.ones(self.image_shape, dtype=torch.bool)
        rest[: self.y_shape[0], : self.y_shape[1], : self.y_shape[2]] = False
        self.rest_idx = torch.nonzero(rest.flatten()).flatten()

    def to(self, device=None, dtype=None) -> "Kronecker":
        super().to(device, dtype)
        move = lambda mats: [None if v is None else v.to(device=device, dtype=dtype or v.dtype) for v in mats]
        self.left, self.right = move(self.left), move(self.right)
        self.factors = tuple(move(self.factors))
        return self

    @property
    def device(self) -> torch.device:
        return self.rest_idx.device

    def Vt(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        t = _along(x.reshape(b, *self.image_shape), [None if v is None else v.t() for v in self.right])
        mc, mh, mw = self.y_shape
        head = t[:, :mc, :mh, :mw].reshape(b, -1)
        if self.rest_idx.numel() == 0:
            return head
        return torch.cat([head, t.reshape(b, -1)[:, self.rest_idx]], dim=1)

    def V(self, vec: torch.Tensor) -> torch.Tensor:
        b = vec.shape[0]
        vec = vec.reshape(b, self.n)
        mc, mh, mw = self.y_shape
        if self.rest_idx.numel() == 0:
            t = vec.reshape(b, *self.image_shape)
        else:
            t = vec.new_zeros(b, self.n).index_copy(1, self.rest_idx, vec[:, self.m:]).reshape(b, *self.image_shape)
            t[:, :mc, :mh, :mw] = vec[:, : self.m].reshape(b, mc, mh, mw)
        return _along(t, self.right).reshape(b, self.n)

    def U(self, vec: torch.Tensor) -> torch.Tensor:
        b = vec.shape[0]
        return _along(vec.reshape(b, *self.y_shape), self.left).reshape(b, self.m)

    def Ut(self, y: torch.Tensor) -> torch.Tensor:
        y = self.check_y(y)
        b = y.shape[0]
        return _along(y.reshape(b, *self.y_shape), [None if u is None else u.t() for u in self.left]).reshape(b, -1)

    def singulars(self) -> torch.Tensor:
        return self._singulars

    def H(self, x: torch.Tensor) -> torch.Tensor:
        """The exact operator (not its truncation at ``zero_threshold``)."""
        x = self.check_x(x)
        return _along(x, self.factors)
