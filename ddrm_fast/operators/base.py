"""The operator interface: an SVD H = U S V^T (as DDRM needs it) plus a natural-layout ``H(x)``.

Layouts (B is the batch):
- images are (B, C, H, W); their flat form is (B, N) with N = C*H*W in (C, H, W) order;
- measurements ``y`` have a natural shape per operator (``y_shape``: a low-res image, a gray image, a masked image,
  a vector); their flat form (B, m) is that natural layout flattened, and ``U`` acts on it;
- spectral vectors are (B, N): coordinates 0..m-1 pair with ``singulars()`` (length m), the rest are directions H
  does not see.
``singulars()`` is (m,) or, for operators with per-sample masks, (B, m). A zero singular value marks a direction H
does not measure: the sampler treats it as unmeasured (DDRM's case 3), never as measured with noise.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch

__all__ = ["LinearOperator", "check_image_shape", "check_ratio", "check_threshold"]


def check_threshold(value, name: str = "zero_threshold") -> float:
    """A finite float >= 0 (a NaN would silently count every singular value as measured)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_image_shape(image_shape: Sequence[int], name: str = "image_shape") -> Tuple[int, int, int]:
    """Validate a (C, H, W) triple of positive ints (a float that is not a whole number is refused, not truncated)."""
    try:
        values = list(image_shape)
        shape = tuple(int(s) for s in values)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (C, H, W) tuple of ints, got {image_shape!r}") from None
    if any(isinstance(v, bool) or v != s for v, s in zip(values, shape)):
        raise ValueError(f"{name} must be a (C, H, W) tuple of ints, got {image_shape!r}")
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{name} must be a (C, H, W) tuple of positive ints, got {image_shape!r}")
    return shape


def check_ratio(ratio, image_shape: Sequence[int]) -> Tuple[int, int, int]:
    """Validate a downsampling ratio against (C, H, W); returns the checked image shape."""
    if not isinstance(ratio, int) or isinstance(ratio, bool) or ratio < 1:
        raise ValueError(f"ratio must be a positive int, got {ratio!r}")
    shape = check_image_shape(image_shape)
    if shape[1] % ratio or shape[2] % ratio:
        raise ValueError(f"ratio {ratio} does not divide the image size {shape[1]}x{shape[2]}")
    return shape


class LinearOperator:
    """Base class: subclasses set ``image_shape``, ``y_shape`` and implement V, Vt, U, Ut, singulars."""

    image_shape: Tuple[int, int, int]
    y_shape: Tuple[int, ...]
    #: batch size fixed by per-sample data (masks), or None when any batch works
    batch: Optional[int] = None
    #: U is the identity on flat y, so per-coordinate noise maps of y are per-coordinate in spectral space
    identity_U: bool = False

    # --- sizes -------------------------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Image dimension N = C*H*W."""
        c, h, w = self.image_shape
        return c * h * w

    @property
    def m(self) -> int:
        """Measurement dimension (length of ``singulars()``)."""
        out = 1
        for s in self.y_shape:
            out *= s
        return out

    # --- the SVD interface (flat layouts) ----------------------------------------------------------------------
    def V(self, vec: torch.Tensor) -> torch.Tensor:
        """Spectral (B, N) -> flat image (B, N)."""
        raise NotImplementedError

    def Vt(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, C, H, W) or flat (B, N) -> spectral (B, N)."""
        raise NotImplementedError

    def U(self, vec: torch.Tensor) -> torch.Tensor:
        """(B, m) -> flat measurement (B, m)."""
        raise NotImplementedError

    def Ut(self, y: torch.Tensor) -> torch.Tensor:
        """Measurement, natural (B, *y_shape) or flat (B, m) -> (B, m)."""
        raise NotImplementedError

    def singulars(self) -> torch.Tensor:
        """Singular values, (m,) or (B, m) for per-sample operators; zeros mark unmeasured directions."""
        raise NotImplementedError

    def add_zeros(self, vec: torch.Tensor) -> torch.Tensor:
        """Pad (B, m) with zeros to the spectral size (B, N)."""
        vec = vec.reshape(vec.shape[0], -1)
        return torch.cat([vec, vec.new_zeros(vec.shape[0], self.n - vec.shape[1])], dim=1)

    # --- natural layout ----------------------------------------------------------------------------------------
    def H(self, x: torch.Tensor) -> torch.Tensor:
        """Apply H to images (B, C, H, W); y comes back in its natural shape (B, *y_shape)."""
        x = self.check_x(x)
        s = self.singulars()
        return self.U(s * self.Vt(x)[:, : self.m]).reshape(x.shape[0], *self.y_shape)

    def Ht(self, y: torch.Tensor) -> torch.Tensor:
        """Apply H^T to measurements; returns images (B, C, H, W)."""
        uty = self.Ut(y)
        return self.V(self.add_zeros(self.singulars() * uty)).reshape(uty.shape[0], *self.image_shape)

    def H_pinv(self, y: torch.Tensor) -> torch.Tensor:
        """Apply the pseudo-inverse V S^+ U^T (zero singular values stay zero); returns images (B, C, H, W)."""
        uty = self.Ut(y)
        s = self.singulars()
        ybar = torch.where(s > 0, uty / torch.where(s > 0, s, torch.ones_like(s)), torch.zeros_like(uty))
        return self.V(self.add_zeros(ybar)).reshape(uty.shape[0], *self.image_shape)

    # --- checks and helpers --------------------------------------------------------------------------------------
    def check_x(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        """(B, C, H, W) or flat (B, N) matching ``image_shape`` (and ``batch``) -> (B, C, H, W)."""
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() == 2 and x.shape[1] == self.n:
            x = x.reshape(x.shape[0], *self.image_shape)
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"{name} must have shape (B, {', '.join(map(str, self.image_shape))}) for this "
                             f"operator, got {tuple(x.shape)}")
        self._check_batch(x.shape[0], name)
        return x

    def check_y(self, y: torch.Tensor, name: str = "y") -> torch.Tensor:
        """Natural (B, *y_shape) or flat (B, m) -> flat (B, m)."""
        if not isinstance(y, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(y).__name__}")
        if y.dim() >= 1 and tuple(y.shape[1:]) in (tuple(self.y_shape), (self.m,)):
            self._check_batch(y.shape[0], name)
            return y.reshape(y.shape[0], self.m)
        raise ValueError(f"{name} must have shape (B, {', '.join(map(str, self.y_shape))}) (or (B, {self.m}) "
                         f"flat) for {type(self).__name__} on images {self.image_shape}, got {tuple(y.shape)}")

    def _check_batch(self, b: int, name: str) -> None:
        if self.batch is not None and self.batch not in (1, b):
            raise ValueError(f"{name} has batch {b} but the operator holds per-sample data for {self.batch}")

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], self.n)

    def to(self, device=None, dtype=None) -> "LinearOperator":
        """Move the operator's tensors (in place) and return it."""
        for k, v in vars(self).items():
            if isinstance(v, torch.Tensor):
                tgt_dtype = dtype if (dtype is not None and v.is_floating_point()) else v.dtype
                setattr(self, k, v.to(device=device, dtype=tgt_dtype))
        return self

    @property
    def device(self) -> torch.device:
        for v in vars(self).values():
            if isinstance(v, torch.Tensor):
                return v.device
        return torch.device("cpu")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(image_shape={self.image_shape}, y_shape={self.y_shape})"
