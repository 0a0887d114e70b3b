"""Rank-one-per-group operators: denoising, inpainting, block super-resolution, colorization (docs/ddrm.md,
"Rank one per group").

The image splits into disjoint groups of ``cg`` channels x ``rh`` x ``rw`` pixels; each group g gives one
measurement y_g = k . x_g (k: ``weights``, length n = cg*rh*rw), or none where ``observed`` is 0. Per group,
v = k/|k|, s = |k| * observed, U = I on the natural layout of y, and V^T restricted to the group is [v, Q_perp] for a
fixed orthonormal complement Q_perp. The spectral layout is: the G group directions first (in y's natural order),
then each group's n-1 complement coordinates, group after group.

Fused kernels need only ``group_shape``, ``weights`` and ``observed``: the complement never has to be formed.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .base import LinearOperator, check_image_shape, check_ratio

__all__ = ["GroupOperator", "Denoise", "Inpaint", "SuperRes", "Colorize", "gather_groups", "scatter_groups"]


def gather_groups(t: torch.Tensor, image_shape: Sequence[int], group_shape: Sequence[int]) -> torch.Tensor:
    """(B, C, H, W) or flat (B, N) -> (B, G, n): the groups of ``group_shape`` = (cg, rh, rw), in y's natural order
    (channel group, row, column), each group's n = cg*rh*rw values in (channel, row, col) order."""
    b = t.shape[0]
    c, h, w = image_shape
    cg, rh, rw = group_shape
    t = t.reshape(b, c // cg, cg, h // rh, rh, w // rw, rw).permute(0, 1, 3, 5, 2, 4, 6)
    return t.reshape(b, (c // cg) * (h // rh) * (w // rw), cg * rh * rw)


def scatter_groups(g: torch.Tensor, image_shape: Sequence[int], group_shape: Sequence[int]) -> torch.Tensor:
    """The inverse of :func:`gather_groups`: (B, G, n) -> (B, C, H, W)."""
    b = g.shape[0]
    c, h, w = image_shape
    cg, rh, rw = group_shape
    g = g.reshape(b, c // cg, h // rh, w // rw, cg, rh, rw).permute(0, 1, 4, 2, 5, 3, 6)
    return g.reshape(b, c, h, w)


def _orthonormal_with_first(v: torch.Tensor) -> torch.Tensor:
    """An orthogonal (n, n) matrix whose first column is the unit vector v (a Householder reflection e1 -> v)."""
    n = v.numel()
    e1 = torch.zeros_like(v)
    e1[0] = 1
    u = v - e1
    norm = u.norm()
    if float(norm) < 1e-12:
        return torch.eye(n, dtype=v.dtype)
    u = u / norm
    return torch.eye(n, dtype=v.dtype) - 2 * torch.outer(u, u)


class GroupOperator(LinearOperator):
    """H measures k . x_g for every group g of ``group_shape = (cg, rh, rw)``, optionally masked per sample.

    Args:
        image_shape: (C, H, W); C divisible by cg, H by rh, W by rw.
        group_shape: (cg, rh, rw).
        weights: k, n = cg*rh*rw values in (channel, row, col) order within the group; not all zero.
        observed: optional mask in y's natural layout, shape (B|1, C/cg|1, H/rh, W/rw); nonzero = measured.
    """

    identity_U = True

    def __init__(self, image_shape: Sequence[int], group_shape: Sequence[int], weights,
                 observed: Optional[torch.Tensor] = None):
        self.image_shape = check_image_shape(image_shape)
        c, h, w = self.image_shape
        cg, rh, rw = check_image_shape(group_shape, "group_shape")
        if c % cg or h % rh or w % rw:
            raise ValueError(f"image_shape {self.image_shape} is not divisible by the group shape ({cg}, {rh}, {rw})")
        self.group_shape = (cg, rh, rw)
        self.y_shape = (c // cg, h // rh, w // rw)
        k = torch.as_tensor(weights, dtype=torch.float32).flatten()
        if k.numel() != cg * rh * rw:
            raise ValueError(f"weights must have {cg * rh * rw} values for group shape {self.group_shape}, "
                             f"got {k.numel()}")
        if not bool(torch.isfinite(k).all()) or float(k.norm()) == 0.0:
            raise ValueError("weights must be finite and not all zero")
        self.weights = k
        self.k_norm = k.norm()
        # Q[:, 0] = v = k/|k|; Q[:, 1:] an orthonormal complement (only the explicit-V path uses it)
        self.Q = _orthonormal_with_first((k.double() / k.double().norm())).float()
        self.observed = None
        if observed is not None:
            self.observed = self._check_observed(observed)
            self.batch = self.observed.shape[0]

    def _check_observed(self, observed: torch.Tensor, name: str = "observed") -> torch.Tensor:
        if not isinstance(observed, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(observed).__name__}")
        cy, hy, wy = self.y_shape
        if observed.dim() == 3:
            observed = observed.unsqueeze(0)
        if (observed.dim() != 4 or observed.shape[1] not in (1, cy) or tuple(observed.shape[2:]) != (hy, wy)):
            raise ValueError(f"{name} must have shape (B|1, {cy}|1, {hy}, {wy}), got {tuple(observed.shape)}")
        if not bool(torch.isfinite(observed.float()).all()):
            raise ValueError(f"{name} must be finite")
        obs = (observed != 0).float().expand(observed.shape[0], cy, hy, wy)
        return obs.reshape(observed.shape[0], cy * hy * wy).contiguous()

    # --- group gather / scatter --------------------------------------------------------------------------------
    def to_groups(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) or (B, N) -> (B, G, n), groups in y's natural order."""
        return gather_groups(x, self.image_shape, self.group_shape)

    def from_groups(self, g: torch.Tensor) -> torch.Tensor:
        """(B, G, n) -> flat image (B, N)."""
        return scatter_groups(g, self.image_shape, self.group_shape).reshape(g.shape[0], self.n)

    # --- SVD interface -----------------------------------------------------------------------------------------
    def Vt(self, x: torch.Tensor) -> torch.Tensor:
        coeff = self.to_groups(x) @ self.Q.to(x.dtype)  # (B, G, n): [v . x_g, Q_perp^T x_g]
        return torch.cat([coeff[..., 0], coeff[..., 1:].reshape(x.shape[0], -1)], dim=1)

    def V(self, vec: torch.Tensor) -> torch.Tensor:
        b = vec.shape[0]
        vec = vec.reshape(b, self.n)
        coeff = torch.cat([vec[:, : self.m, None], vec[:, self.m:].reshape(b, self.m, -1)], dim=2)
        return self.from_groups(coeff @ self.Q.t().to(vec.dtype))

    def U(self, vec: torch.Tensor) -> torch.Tensor:
        return vec.reshape(vec.shape[0], self.m)

    def Ut(self, y: torch.Tensor) -> torch.Tensor:
        return self.check_y(y)

    def singulars(self) -> torch.Tensor:
        s = self.k_norm.expand(self.m)
        return s * self.observed if self.observed is not None else s.clone()

    def H(self, x: torch.Tensor) -> torch.Tensor:
        x = self.check_x(x)
        y = self.to_groups(x) @ self.weights.to(x.dtype)
        if self.observed is not None:
            y = y * self.observed.to(x.dtype)
        return y.reshape(x.shape[0], *self.y_shape)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(image_shape={self.image_shape}, group_shape={self.group_shape}, "
                f"observed={'none' if self.observed is None else tuple(self.observed.shape)})")


class Denoise(GroupOperator):
    """H = I: y is the noisy image itself."""

    def __init__(self, image_shape: Sequence[int]):
        super().__init__(image_shape, (1, 1, 1), [1.0])


class Inpaint(GroupOperator):
    """H keeps the pixels where ``mask`` is nonzero; y is the masked image (zeros where missing).

    Args:
        mask: (B|1, C|1, H, W) (or (H, W)); one mask per sample when its batch is B, per channel when C.
        channels: C of the images (default: the mask's channel count, or 3 for a one-channel mask).
    """

    def __init__(self, mask: torch.Tensor, channels: Optional[int] = None):
        if not isinstance(mask, torch.Tensor):
            raise ValueError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
        if mask.dim() == 2:
            mask = mask[None, None]
        if mask.dim() != 4:
            raise ValueError(f"mask must have shape (B|1, C|1, H, W) or (H, W), got {tuple(mask.shape)}")
        if channels is None:
            channels = mask.shape[1] if mask.shape[1] != 1 else 3
        if mask.shape[1] not in (1, channels):
            raise ValueError(f"mask has {mask.shape[1]} channels; expected 1 or channels={channels}")
        super().__init__((channels, mask.shape[2], mask.shape[3]), (1, 1, 1), [1.0], observed=mask)
        #: the original's missing-index order when built by :meth:`from_missing_indices` (its noise draws follow it)
        self.missing_order: Optional[torch.Tensor] = None

    @classmethod
    def from_missing_indices(cls, missing_indices: torch.Tensor, image_shape: Sequence[int]) -> "Inpaint":
        """The operator of the original ``Inpainting(C, H, missing_indices)``: indices into the pixel-major layout
        pixel*C + channel. Their order is kept, since the original assigns its noise draws in that order
        (``noise='compat'`` needs it)."""
        c, h, w = check_image_shape(image_shape)
        idx = torch.as_tensor(missing_indices).long().flatten()
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= c * h * w):
            raise ValueError(f"missing_indices must lie in [0, {c * h * w}) for image_shape {(c, h, w)}")
        if idx.unique().numel() != idx.numel():
            raise ValueError("missing_indices must not repeat")
        pixel_major = torch.ones(c * h * w)
        pixel_major[idx] = 0
        op = cls(pixel_major.reshape(h * w, c).t().reshape(1, c, h, w), channels=c)
        op.missing_order = idx
        return op

    @property
    def mask(self) -> torch.Tensor:
        """The observed mask (B|1, C, H, W) as 0/1 floats."""
        return self.observed.reshape(self.observed.shape[0], *self.image_shape)


class SuperRes(GroupOperator):
    """Block-averaging super-resolution: y is the (H/r, W/r) image of r x r block means, per channel.

    ``observed`` (optional, (B|1, C|1, H/r, W/r)) masks low-res pixels: SR of a partly observed low-res image.
    """

    def __init__(self, ratio: int, image_shape: Sequence[int], observed: Optional[torch.Tensor] = None):
        shape = check_ratio(ratio, image_shape)
        self.ratio = ratio
        super().__init__(shape, (1, ratio, ratio), torch.full((ratio * ratio,), 1.0 / ratio**2), observed)


class Colorize(GroupOperator):
    """Grayscale: y (B, 1, H, W) is the weighted sum of the channels with luminance ``weights`` (default 1/C each).

    ``observed`` (optional, (B|1, 1, H, W)) masks gray pixels.
    """

    def __init__(self, image_shape: Sequence[int], weights: Optional[Sequence[float]] = None,
                 observed: Optional[torch.Tensor] = None):
        shape = check_image_shape(image_shape)
        if weights is None:
            weights = [1.0 / shape[0]] * shape[0]
        super().__init__(shape, (shape[0], 1, 1), weights, observed)
