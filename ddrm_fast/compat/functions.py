"""The original's operators (its functions/svd_replacement.py): the ``H_functions`` classes with their names,
constructor signatures, flat (B, N) layouts, SVD signs and quirks, vectorised (see :mod:`ddrm_fast.compat`)."""
from __future__ import annotations

from typing import Sequence

import torch

from ..operators.cs import fwht

__all__ = ["H_functions", "GeneralH", "Inpainting", "Denoising", "SuperResolution", "Colorization", "WalshHadamardCS",
           "SRConv", "Deblurring", "Deblurring2D"]


def _svd(mat: torch.Tensor):
    """(U, S, V) with V not transposed, as ``torch.svd(mat, some=False)`` returns them (same signs)."""
    u, s, vh = torch.linalg.svd(mat, full_matrices=True)
    return u, s, vh.mT


class H_functions:
    """The SVD of a matrix H, applied without forming H. Inputs are (B, ...); outputs (B, dim).

    Subclasses implement V, Vt, U, Ut, singulars and add_zeros; H, Ht and H_pinv follow from them.
    """

    def V(self, vec):
        """Multiply by V."""
        raise NotImplementedError()

    def Vt(self, vec):
        """Multiply by V^T."""
        raise NotImplementedError()

    def U(self, vec):
        """Multiply by U."""
        raise NotImplementedError()

    def Ut(self, vec):
        """Multiply by U^T."""
        raise NotImplementedError()

    def singulars(self):
        """The singular values, as many as the small dimension (like U)."""
        raise NotImplementedError()

    def add_zeros(self, vec):
        """Pad a vector of the small dimension (U) with zeros to the big one (V)."""
        raise NotImplementedError()

    def H(self, vec):
        """Multiply by H = U S V^T."""
        temp = self.Vt(vec)
        singulars = self.singulars()
        return self.U(singulars * temp[:, : singulars.shape[0]])

    def Ht(self, vec):
        """Multiply by H^T."""
        temp = self.Ut(vec)
        singulars = self.singulars()
        return self.V(self.add_zeros(singulars * temp[:, : singulars.shape[0]]))

    def H_pinv(self, vec):
        """Multiply by the pseudo-inverse (the original divides by every singular value, zeros included)."""
        temp = self.Ut(vec)
        singulars = self.singulars()
        temp[:, : singulars.shape[0]] = temp[:, : singulars.shape[0]] / singulars
        return self.V(self.add_zeros(temp))


class GeneralH(H_functions):
    """Any matrix H (m, N) through its full SVD; singular values under 1e-3 are set to zero."""

    def __init__(self, H):
        self._U, self._singulars, self._V = _svd(H)
        self._Vt = self._V.transpose(0, 1)
        self._Ut = self._U.transpose(0, 1)
        self._singulars = torch.where(self._singulars < 1e-3, torch.zeros_like(self._singulars), self._singulars)

    @staticmethod
    def mat_by_vec(M, v):
        return (v.reshape(v.shape[0], -1) @ M.t()).reshape(v.shape[0], M.shape[0])

    def V(self, vec):
        return self.mat_by_vec(self._V, vec)

    def Vt(self, vec):
        return self.mat_by_vec(self._Vt, vec)

    def U(self, vec):
        return self.mat_by_vec(self._U, vec)

    def Ut(self, vec):
        return self.mat_by_vec(self._Ut, vec)

    def singulars(self):
        return self._singulars

    def add_zeros(self, vec):
        out = torch.zeros(vec.shape[0], self._V.shape[0], device=vec.device, dtype=vec.dtype)
        out[:, : self._U.shape[0]] = vec.reshape(vec.shape[0], -1)
        return out


class _IdentityU(H_functions):
    """U = I (copies, since H_pinv divides U^T y in place), singular values stored in ``_singulars``."""

    def U(self, vec):
        return vec.reshape(vec.shape[0], -1).clone()

    def Ut(self, vec):
        return vec.reshape(vec.shape[0], -1).clone()

    def singulars(self):
        return self._singulars


class _Permutation(_IdentityU):
    """Operators whose V is a fixed permutation of the flat (C, H, W) image and U = I."""

    gather: torch.Tensor  # spectral j <- flat image index gather[j]
    scatter: torch.Tensor  # its inverse

    def V(self, vec):
        return vec.reshape(vec.shape[0], -1)[:, self.scatter]

    def Vt(self, vec):
        return vec.reshape(vec.shape[0], -1)[:, self.gather]

    def add_zeros(self, vec):
        vec = vec.reshape(vec.shape[0], -1)
        return torch.cat([vec, vec.new_zeros(vec.shape[0], self.gather.numel() - vec.shape[1])], dim=1)


class Inpainting(_Permutation):
    """Keep the pixels not in ``missing_indices`` (indices into the pixel-major layout pixel*C + channel).

    Spectral order: kept values (ascending pixel-major index), then the missing ones in the given order.
    """

    def __init__(self, channels, img_dim, missing_indices, device):
        self.channels = channels
        self.img_dim = img_dim
        n = channels * img_dim**2
        missing = torch.as_tensor(missing_indices).long().to(device)
        keep = torch.ones(n, dtype=torch.bool, device=device)
        keep[missing] = False
        self.missing_indices = missing_indices
        self.kept_indices = torch.nonzero(keep).flatten()
        self._singulars = torch.ones(n - missing.shape[0], device=device)
        order = torch.cat([self.kept_indices, missing])  # pixel-major index of spectral coordinate j
        self.gather = (order % channels) * img_dim**2 + order // channels  # its channel-major image index
        self.scatter = torch.argsort(self.gather)


class Denoising(_Permutation):
    """H = I."""

    def __init__(self, channels, img_dim, device):
        n = channels * img_dim**2
        self._singulars = torch.ones(n, device=device)
        self.gather = torch.arange(n, device=device)
        self.scatter = self.gather

    def V(self, vec):
        return vec.reshape(vec.shape[0], -1).clone()

    def Vt(self, vec):
        return vec.reshape(vec.shape[0], -1).clone()


class SuperResolution(H_functions):
    """Block averaging by ``ratio``: per channel and r x r patch, the small SVD of [1/r^2, ..., 1/r^2].

    Spectral order: the first coordinate of every patch (channel-major), then the other r^2 - 1 of each patch.
    """

    def __init__(self, channels, img_dim, ratio, device):
        assert img_dim % ratio == 0
        self.img_dim = img_dim
        self.channels = channels
        self.y_dim = img_dim // ratio
        self.ratio = ratio
        H = torch.full((1, ratio**2), 1.0 / ratio**2, device=device)
        self.U_small, self.singulars_small, self.V_small = _svd(H)
        self.Vt_small = self.V_small.transpose(0, 1)

    def _patches(self, vec):
        b, c, d, r = vec.shape[0], self.channels, self.y_dim, self.ratio
        x = vec.reshape(b, c, d, r, d, r).permute(0, 1, 2, 4, 3, 5)
        return x.reshape(b, c * d * d, r * r)

    def Vt(self, vec):
        coeff = self._patches(vec) @ self.V_small
        return torch.cat([coeff[..., 0], coeff[..., 1:].reshape(vec.shape[0], -1)], dim=1)

    def V(self, vec):
        b, c, d, r = vec.shape[0], self.channels, self.y_dim, self.ratio
        vec = vec.reshape(b, -1)
        g = c * d * d
        coeff = torch.cat([vec[:, :g, None], vec[:, g:].reshape(b, g, r * r - 1)], dim=2) @ self.Vt_small
        return coeff.reshape(b, c, d, d, r, r).permute(0, 1, 2, 4, 3, 5).reshape(b, -1)

    def U(self, vec):
        return self.U_small[0, 0] * vec.reshape(vec.shape[0], -1)

    def Ut(self, vec):
        return self.U_small[0, 0] * vec.reshape(vec.shape[0], -1)

    def singulars(self):
        return self.singulars_small.repeat(self.channels * self.y_dim**2)

    def add_zeros(self, vec):
        vec = vec.reshape(vec.shape[0], -1)
        return torch.cat([vec, vec.new_zeros(vec.shape[0], vec.shape[1] * (self.ratio**2 - 1))], dim=1)


class Colorization(H_functions):
    """Grayscale with weights (0.3333, 0.3334, 0.3333) (``weights`` may replace them); per pixel the small SVD.

    Spectral order: coordinate c' of every pixel, c' = 0 (measured) first, channel-major.
    """

    def __init__(self, img_dim, device, *, weights: Sequence[float] = (0.3333, 0.3334, 0.3333)):
        self.channels = 3
        self.img_dim = img_dim
        self.weights = [float(w) for w in weights]
        H = torch.tensor([list(weights)], dtype=torch.float32, device=device)
        self.U_small, self.singulars_small, self.V_small = _svd(H)
        self.Vt_small = self.V_small.transpose(0, 1)

    def V(self, vec):
        b = vec.shape[0]
        needles = vec.reshape(b, self.channels, -1).transpose(1, 2) @ self.Vt_small  # (B, HW, C)
        return needles.transpose(1, 2).reshape(b, -1)

    def Vt(self, vec):
        b = vec.shape[0]
        needles = vec.reshape(b, self.channels, -1).transpose(1, 2) @ self.V_small  # (B, HW, C')
        return needles.transpose(1, 2).reshape(b, -1)

    def U(self, vec):
        return self.U_small[0, 0] * vec.reshape(vec.shape[0], -1)

    def Ut(self, vec):
        return self.U_small[0, 0] * vec.reshape(vec.shape[0], -1)

    def singulars(self):
        return self.singulars_small.repeat(self.img_dim**2)

    def add_zeros(self, vec):
        vec = vec.reshape(vec.shape[0], -1)
        return torch.cat([vec, vec.new_zeros(vec.shape[0], (self.channels - 1) * self.img_dim**2)], dim=1)


class WalshHadamardCS(_IdentityU):
    """Compressed sensing: the first C*HW/ratio coefficients (in ``perm`` order) of each channel's orthonormal
    Walsh-Hadamard transform; spectral layout pixel-major (index*C + channel)."""

    def __init__(self, channels, img_dim, ratio, perm, device):
        self.channels = channels
        self.img_dim = img_dim
        self.ratio = ratio
        self.perm = perm
        self._singulars = torch.ones(channels * img_dim**2 // ratio, device=device)

    def fwht(self, vec):
        return fwht(vec.reshape(vec.shape[0], self.channels, self.img_dim**2))

    def V(self, vec):
        b = vec.shape[0]
        temp = torch.zeros(b, self.channels, self.img_dim**2, device=vec.device, dtype=vec.dtype)
        temp[:, :, self.perm] = vec.reshape(b, -1, self.channels).permute(0, 2, 1)
        return self.fwht(temp).reshape(b, -1)

    def Vt(self, vec):
        return self.fwht(vec)[:, :, self.perm].permute(0, 2, 1).reshape(vec.shape[0], -1)

    def add_zeros(self, vec):
        out = torch.zeros(vec.shape[0], self.channels * self.img_dim**2, device=vec.device, dtype=vec.dtype)
        out[:, : self.channels * self.img_dim**2 // self.ratio] = vec.reshape(vec.shape[0], -1)
        return out


def _legacy_conv_matrix(kernel: torch.Tensor, rows: int, cols: int, device, stride: int = 1,
                        reflect: bool = False) -> torch.Tensor:
    """The original's 1-D blur matrix: row i (centre i*stride + stride//2) takes taps j = centre - K//2 ..
    centre + K//2 - 1, i.e. the last tap of an odd kernel is dropped; out-of-range columns are skipped (zero
    boundary) or reflected (``reflect``, as SRConv does)."""
    kernel = torch.as_tensor(kernel, dtype=torch.float32).to(device)
    K = kernel.shape[0]
    mat = torch.zeros(rows, cols, device=device)
    centres = torch.arange(rows, device=device) * stride + stride // 2
    for t in range(2 * (K // 2)):
        j = centres + t - K // 2
        if reflect:
            j = torch.where(j < 0, -j - 1, j)
            j = torch.where(j >= cols, 2 * cols - 1 - j, j)
            mat.index_put_((torch.arange(rows, device=device), j), kernel[t].expand(rows), accumulate=True)
        else:
            ok = (j >= 0) & (j < cols)
            mat[torch.arange(rows, device=device)[ok], j[ok]] = kernel[t]
    return mat


class _Separable(H_functions):
    """V = V1 kron V2 on (img_dim x img_dim) channels, with a permutation of the per-channel coefficients and the
    channel index fastest in the spectral layout."""

    def _setup(self, H1, H2, zero):
        self.U_small1, s1, self.V_small1 = _svd(H1)
        self.U_small2, s2, self.V_small2 = _svd(H2)
        self.singulars_small1 = torch.where(s1 < zero, torch.zeros_like(s1), s1)
        self.singulars_small2 = torch.where(s2 < zero, torch.zeros_like(s2), s2)
        prod = (self.singulars_small1.reshape(-1, 1) @ self.singulars_small2.reshape(1, -1)).reshape(-1)
        self._singulars, self._perm = prod.sort(descending=True)
        self._inv_perm = torch.argsort(self._perm)

    def _apply(self, A, B, vec):  # A X B^T per channel
        b, c, d = vec.shape[0], self.channels, self.img_dim
        return (A @ vec.reshape(b, c, d, d) @ B.t()).reshape(b, c, d * d)

    def _from_spectral(self, A, B, vec):  # the channel-fastest, permuted coefficients -> A X B^T per channel
        b = vec.shape[0]
        coeff = vec.reshape(b, self.img_dim**2, self.channels)[:, self._inv_perm].permute(0, 2, 1)
        return self._apply(A, B, coeff).reshape(b, -1)

    def _to_spectral(self, A, B, vec):  # A^T X B per channel -> the channel-fastest, permuted coefficients
        coeff = self._apply(A.t(), B.t(), vec)[:, :, self._perm]
        return coeff.permute(0, 2, 1).reshape(vec.shape[0], -1)

    def V(self, vec):
        return self._from_spectral(self.V_small1, self.V_small2, vec)

    def Vt(self, vec):
        return self._to_spectral(self.V_small1, self.V_small2, vec)

    def U(self, vec):
        return self._from_spectral(self.U_small1, self.U_small2, vec)

    def Ut(self, vec):
        return self._to_spectral(self.U_small1, self.U_small2, vec)

    def singulars(self):
        return self._singulars.repeat(1, self.channels).reshape(-1)  # tiled, though the layout interleaves

    def add_zeros(self, vec):
        return vec.reshape(vec.shape[0], -1).clone()


class Deblurring(_Separable):
    """Isotropic separable blur with a 1-D ``kernel`` (zero boundary, last tap dropped, see the module notes)."""

    def __init__(self, kernel, channels, img_dim, device, ZERO=3e-2):
        self.img_dim = img_dim
        self.channels = channels
        H_small = _legacy_conv_matrix(kernel, img_dim, img_dim, device)
        self._setup(H_small, H_small, ZERO)
        self.U_small, self.singulars_small, self.V_small = self.U_small1, self.singulars_small1, self.V_small1


class Deblurring2D(_Separable):
    """Anisotropic separable blur: ``kernel1`` along rows, ``kernel2`` along columns."""

    def __init__(self, kernel1, kernel2, channels, img_dim, device):
        self.img_dim = img_dim
        self.channels = channels
        self._setup(_legacy_conv_matrix(kernel1, img_dim, img_dim, device),
                    _legacy_conv_matrix(kernel2, img_dim, img_dim, device), 3e-2)


class SRConv(H_functions):
    """Super-resolution by a separable ``kernel`` with ``stride`` and reflective padding (used for bicubic SR)."""

    def __init__(self, kernel, channels, img_dim, device, stride=1):
        self.img_dim = img_dim
        self.channels = channels
        self.ratio = stride
        self.small_dim = small = img_dim // stride
        H_small = _legacy_conv_matrix(kernel, small, img_dim, device, stride=stride, reflect=True)
        self.U_small, s, self.V_small = _svd(H_small)
        self.singulars_small = torch.where(s < 3e-2, torch.zeros_like(s), s)
        self._singulars = (self.singulars_small.reshape(small, 1) @ self.singulars_small.reshape(1, small)).reshape(-1)
        # the (i, j < small) corner first, then the other columns of the first `small` rows (P_1 of Appendix D.5)
        i = torch.arange(small, device=device).reshape(-1, 1)
        self._perm = torch.cat([(img_dim * i + torch.arange(small, device=device)).reshape(-1),
                                (img_dim * i + torch.arange(small, img_dim, device=device)).reshape(-1)])

    def _mm(self, A, B, vec, d):  # A X B per channel on (d x d)
        b = vec.shape[0]
        return (A @ vec.reshape(b, self.channels, d, d) @ B).reshape(b, self.channels, -1)

    def V(self, vec):
        b, d = vec.shape[0], self.img_dim
        flat = vec.reshape(b, d * d, self.channels)
        p = self._perm.shape[0]
        temp = flat.clone()
        temp[:, self._perm] = flat[:, :p]
        return self._mm(self.V_small, self.V_small.t(), temp.permute(0, 2, 1), d).reshape(b, -1)

    def Vt(self, vec):
        temp = self._mm(self.V_small.t(), self.V_small, vec, self.img_dim)
        temp[:, :, : self._perm.shape[0]] = temp[:, :, self._perm]
        return temp.permute(0, 2, 1).reshape(vec.shape[0], -1)

    def U(self, vec):
        b, d = vec.shape[0], self.small_dim
        temp = vec.reshape(b, d * d, self.channels).permute(0, 2, 1)
        return self._mm(self.U_small, self.U_small.t(), temp, d).reshape(b, -1)

    def Ut(self, vec):
        temp = self._mm(self.U_small.t(), self.U_small, vec, self.small_dim)
        return temp.permute(0, 2, 1).reshape(vec.shape[0], -1)

    def singulars(self):
        return self._singulars.repeat_interleave(self.channels).reshape(-1)

    def add_zeros(self, vec):
        vec = vec.reshape(vec.shape[0], -1)
        return torch.cat([vec, vec.new_zeros(vec.shape[0], vec.shape[1] * (self.ratio**2 - 1))], dim=1)
