"""Any 2-D convolution kernel with circular boundaries, diagonalised by the real 2-D DFT (docs/ddrm.md, "Any
convolution: the real Fourier basis").

A circulant H has the Fourier modes as eigenvectors with complex eigenvalues K(f) = |K(f)| e^{i phi(f)} (the DFT of
the kernel). DDRM needs a real orthogonal basis and real singular values: the real coordinates of ``rfft2(x,
norm="ortho")`` (the real part of the self-conjugate frequencies, sqrt(2) times the real and imaginary parts of the
others, one of each conjugate pair) are V^T x; U^T y is the same coordinates of ``rfft2(y)`` with the phase
e^{-i phi} removed, and the singular values are |K(f)| (once per real coordinate). V and U are O(N log N) with
``torch.fft``; no dense matrix is ever formed.
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch

from .base import LinearOperator, check_image_shape, check_threshold

__all__ = ["Convolution", "real_fourier_layout"]


def real_fourier_layout(height: int, width: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices into the flattened (height, width // 2 + 1) ``rfft2`` output: the self-conjugate frequencies (real
    coefficients), one frequency of each conjugate pair, and for the pairs inside the columns 0 and width/2 (which
    ``rfft2`` keeps whole) their positions among the pairs and their partners' indices. len(real) + 2 len(pairs) =
    height * width."""
    wr = width // 2 + 1
    rows = torch.arange(height).view(-1, 1).expand(height, wr)
    cols = torch.arange(wr).view(1, -1).expand(height, wr)
    edge = (cols == 0) | ((width % 2 == 0) & (cols == width // 2))  # columns whose conjugates are in the same column
    partner_row = (-rows) % height
    self_conj = edge & (partner_row == rows)
    first_of_pair = ~edge | (rows < partner_row)
    flat = rows * wr + cols
    chosen = ~self_conj & first_of_pair
    real, pairs = flat[self_conj], flat[chosen]
    in_edge = edge[chosen]
    partners = (partner_row * wr + cols)[chosen][in_edge]
    assert real.numel() + 2 * pairs.numel() == height * width
    return real, pairs, torch.nonzero(in_edge).flatten(), partners


class Convolution(LinearOperator):
    """y = k * x (2-D convolution, circular boundary) per channel; y has the image's shape.

    Args:
        kernel: (kh, kw) shared by every channel, or (C, kh, kw) one per channel; its centre (kh // 2, kw // 2)
            sits on the output pixel. Any real kernel (motion blur, a defocus disk, a measured PSF); kh <= H, kw <= W.
        image_shape: (C, H, W).
        boundary: ``"circular"`` (the image wraps around: what the DFT diagonalises; docs/degradations.md says what that
            costs on a photo's frame).
        zero_threshold: singular values |K(f)| under it count as unmeasured (DDRM's case 3).
    """

    def __init__(self, kernel, image_shape: Sequence[int], boundary: str = "circular", zero_threshold: float = 1e-3):
        self.image_shape = check_image_shape(image_shape)
        c, h, w = self.image_shape
        if boundary != "circular":
            raise ValueError(f"boundary must be 'circular' (the one the DFT diagonalises), got {boundary!r}")
        zero_threshold = check_threshold(zero_threshold)
        self.zero_threshold = zero_threshold  # operators.check allows this truncation of H
        k = torch.as_tensor(kernel, dtype=torch.float64)
        if k.is_complex() or k.dim() not in (2, 3) or (k.dim() == 3 and k.shape[0] not in (1, c)) or k.numel() == 0:
            raise ValueError(f"kernel must be a real (kh, kw) or ({c}, kh, kw) tensor, got shape {tuple(k.shape)}")
        if k.shape[-2] > h or k.shape[-1] > w:
            raise ValueError(f"the kernel ({k.shape[-1]}x{k.shape[-2]}) is larger than the image ({w}x{h})")
        if not bool(torch.isfinite(k).all()):
            raise ValueError("kernel must be finite")
        self.boundary = boundary
        self.kernel = (k if k.dim() == 3 else k[None]).float()
        self.y_shape = self.image_shape
        # the kernel's centre moved to pixel (0, 0): the DFT of that image is the transfer function K(f), and
        # rfft2(y) = K rfft2(x) in any normalisation, so the singular values are |K(f)|
        kh, kw = self.kernel.shape[-2:]
        padded = torch.zeros(self.kernel.shape[0], h, w, dtype=torch.float64)
        padded[:, :kh, :kw] = self.kernel.double()
        transfer = torch.fft.rfft2(torch.roll(padded, (-(kh // 2), -(kw // 2)), dims=(-2, -1)))
        self.transfer = transfer.to(torch.complex64)
        magnitude = transfer.abs()
        # e^{i phi}; a zero K has no phase: 1 keeps U orthogonal
        phase = torch.where(magnitude > 0, transfer / torch.where(magnitude > 0, magnitude, 1.0), 1.0 + 0j)
        self.phase = phase.to(torch.complex64)
        self.real_idx, self.pair_idx, self.edge_pos, self.partner_idx = real_fourier_layout(h, w)
        mag = magnitude.reshape(self.kernel.shape[0], -1)
        s = torch.cat([mag[:, self.real_idx], mag[:, self.pair_idx], mag[:, self.pair_idx]], dim=1)
        s = s.expand(c, h * w).reshape(-1)
        self._singulars = torch.where(s < zero_threshold, torch.zeros_like(s), s).float()

    # --- the real Fourier coordinates ------------------------------------------------------------------------------
    def _coordinates(self, spectrum: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W//2+1) complex -> (B, C*H*W) real: per channel the self-conjugate coefficients, then sqrt(2)
        times the real and the imaginary parts of one frequency of each pair (sqrt 2 keeps the map orthogonal)."""
        flat = spectrum.reshape(*spectrum.shape[:2], -1)
        pair = flat[..., self.pair_idx] * math.sqrt(2)
        out = torch.cat([flat[..., self.real_idx].real, pair.real, pair.imag], dim=-1)
        return out.reshape(spectrum.shape[0], -1)

    def _spectrum(self, vec: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`_coordinates`: (B, N) -> Hermitian (B, C, H, W//2+1) complex."""
        c, h, w = self.image_shape
        b, nr, npair = vec.shape[0], self.real_idx.numel(), self.pair_idx.numel()
        v = vec.reshape(b, c, h * w).float()
        pair = torch.complex(v[..., nr:nr + npair], v[..., nr + npair:]) / math.sqrt(2)
        flat = torch.zeros(b, c, h * (w // 2 + 1), dtype=torch.complex64, device=vec.device)
        flat[..., self.real_idx] = v[..., :nr].to(flat.dtype)
        flat[..., self.pair_idx] = pair
        # pairs inside the columns rfft2 keeps whole carry their conjugate explicitly (irfft2 reads both)
        flat[..., self.partner_idx] = pair[..., self.edge_pos].conj()
        return flat.reshape(b, c, h, w // 2 + 1)

    def _image(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.image_shape).float()

    # --- the SVD interface ---------------------------------------------------------------------------------------
    def Vt(self, x: torch.Tensor) -> torch.Tensor:
        return self._coordinates(torch.fft.rfft2(self._image(x), norm="ortho"))

    def V(self, vec: torch.Tensor) -> torch.Tensor:
        h, w = self.image_shape[1:]
        return torch.fft.irfft2(self._spectrum(vec), s=(h, w), norm="ortho").reshape(vec.shape[0], self.n)

    def Ut(self, y: torch.Tensor) -> torch.Tensor:
        y = self.check_y(y)
        return self._coordinates(torch.fft.rfft2(self._image(y), norm="ortho") * self.phase.conj())

    def U(self, vec: torch.Tensor) -> torch.Tensor:
        h, w = self.image_shape[1:]
        return torch.fft.irfft2(self._spectrum(vec) * self.phase, s=(h, w), norm="ortho").reshape(vec.shape[0], self.m)

    def singulars(self) -> torch.Tensor:
        return self._singulars

    def H(self, x: torch.Tensor) -> torch.Tensor:
        """The exact circular convolution (not its truncation at ``zero_threshold``)."""
        x = self.check_x(x)
        h, w = self.image_shape[1:]
        return torch.fft.irfft2(torch.fft.rfft2(x.float()) * self.transfer, s=(h, w)).to(x.dtype)
