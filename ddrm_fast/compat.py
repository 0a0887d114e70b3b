"""Drop-in replacement for the original DDRM API (functions/svd_replacement.py and functions/denoising.py).

``from ddrm_fast.compat import ...`` replaces the original imports unchanged: the same class names, constructor
signatures, flat (B, N) layouts, SVD signs and quirks, so results match the original's (tests/test_golden.py). What
is not kept is the cost: constructors are vectorized (Inpainting at 256x256 is milliseconds, not seconds), no
transform is computed and thrown away, and the sampling loop has no per-step host syncs or device-to-host copies.

Quirks kept on purpose (the ``ddrm_fast.operators`` classes are the correct versions):
- Deblurring/Deblurring2D build each 1-D matrix over columns i - K//2 .. i + K//2 - 1, dropping the last tap, and
  zero 1-D singular values under ``ZERO``;
- Deblurring/Deblurring2D return their singular values tiled per channel while their spectral layout interleaves
  channels, so their H is not the blur (y made by the same operator keeps the code self-consistent);
- zero singular values inside the measured range take the 'less noisy than y' case when sigma_0 > 0;
- SVD signs are torch's (U = -1 for SuperResolution and Colorization).
"""
from __future__ import annotations

import functools
import math
import re
from typing import Callable, List, Optional, Sequence, Tuple

import torch

from . import backends
from . import operators as O
from . import reference
from ._utils import Generator, randn
from .diffusion import take_eps
from .operators.cs import fwht
from .sampler import NoiseRequest, register_noise
from .sampler.steps import build_step
from .schedules import abar_table

__all__ = ["H_functions", "GeneralH", "Inpainting", "Denoising", "SuperResolution", "Colorization",
           "WalshHadamardCS", "SRConv", "Deblurring", "Deblurring2D", "efficient_generalized_steps", "equivalent",
           "CompatNoise", "runner_operator", "check_runner_degradation"]


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


def efficient_generalized_steps(x, seq, model, b, H_funcs, y_0, sigma_0, etaB, etaA, etaC, cls_fn=None,
                                classes=None, backend: str = "auto") -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """DDRM sampling exactly as the original ``efficient_generalized_steps`` computes it (same random draws, same
    case tests, same quirks), on any device and for any ``H_functions`` subclass, on the fused kernels.

    ``backend`` (the one addition to the original's signature): ``"auto"`` (the fastest available), ``"reference"``
    (plain PyTorch, the oracle), ``"cpu"``, ``"cuda"`` or ``"triton"``. The original's rank-one-per-group classes
    (Denoising, Inpainting, SuperResolution, Colorization, with etaA == etaC) take the one-pass group step, with the
    original's draws mapped into pixels by the class's own V; every other ``H_functions`` (the original's Deblurring,
    SRConv, WalshHadamardCS, GeneralH, a user's own subclass) takes the fused spectral step between its own V and V^T.

    Returns ``(xs, x0_preds)``: ``xs[0]`` is the initial state x_T and ``xs[i + 1]`` the state after step i;
    ``x0_preds[i]`` is step i's x0 prediction. Unlike the original, which copies every step to the CPU, the
    trajectory stays on ``x``'s device (one tensor per step, nothing moved or synchronised inside the loop); move
    ``xs[-1]`` yourself when you need it on the host. Sampling records no autograd history.
    """
    with torch.no_grad():
        kernels = backends.resolve(backend, x.device)
        batch, n, device = x.shape[0], x[0].numel(), x.device
        singulars = H_funcs.singulars().to(device)
        uty = H_funcs.Ut(y_0)
        m = uty.shape[1]
        if singulars.shape[0] != m:
            raise ValueError(f"H_funcs.singulars() has {singulars.shape[0]} values but H_funcs.Ut(y_0) has {m}")
        sigma_0 = float(sigma_0)
        seq = list(seq)
        rev, rev_next = list(reversed(seq)), list(reversed([-1] + seq[:-1]))
        coef, sigma_T = reference.step_coefficients(abar_table(b), rev, rev_next)
        coef, sigma_T = coef.to(device), sigma_T.to(device)
        sy = torch.full((1, 1), sigma_0, device=device)
        group_op = _group_operator(H_funcs, tuple(x.shape[1:])) if kernels.fused and etaA == etaC else None
        to_pixels = (lambda z: H_funcs.V(z).reshape(x.shape)) if group_op is not None else None  # noqa: E731
        noise = CompatNoise(singulars, sigma_0, coef[:, 2], batch, n, None, device, to_pixels)
        init_coef = reference.initial_coefficients(sigma_T)
        if group_op is not None:
            initial, advance = _group_steps(kernels, group_op.to(device), H_funcs, y_0, sy, init_coef, etaA, etaB)
        else:
            initial, advance = _spectral_steps(kernels, H_funcs, uty, singulars.reshape(1, m).to(uty.dtype), sy,
                                               init_coef, x.shape, etaA, etaB, etaC)
        xs = [initial(noise.initial(x))]
        x0_preds = []
        ts = torch.tensor(rev, dtype=torch.float32, device=device)
        for i in range(len(rev)):
            xt, t = xs[-1], ts[i].expand(batch)
            if cls_fn is None:
                et = model(xt, t)
            else:
                et = model(xt, t, classes)[:, :3]
                # the original evaluates the classifier at x (the initial state), not at x_t; kept for equal results
                et = et - coef[i, 1] * cls_fn(xs[0], t, classes)
            et = take_eps(et, x.shape[1])
            x0_preds.append((xt - et * coef[i, 1]) / coef[i, 0])
            xs.append(advance(xt, et, noise.step(i), coef[i]))
    return xs, x0_preds


def _group_operator(H_funcs, image_shape) -> Optional[O.GroupOperator]:
    """The ddrm_fast operator with the H of one of the original's rank-one-per-group classes (exactly these classes:
    a subclass may have changed its transforms), whose one-pass step then serves it; else None."""
    kind = type(H_funcs)
    if kind is Denoising:
        return O.Denoise(image_shape)
    if kind is Inpainting:
        return O.Inpaint.from_missing_indices(torch.as_tensor(H_funcs.missing_indices).cpu(), image_shape)
    if kind is SuperResolution:
        return O.SuperRes(H_funcs.ratio, image_shape)
    if kind is Colorization and image_shape[0] == 3:
        return O.Colorize(image_shape, weights=H_funcs.weights)
    return None


def _group_steps(kernels, operator: O.GroupOperator, H_funcs, y_0, sy, init_coef, eta, eta_b):
    """(initial(z), advance(x_t, eps, z, coef)) by the sampler's one-pass group step, z the original's draw mapped
    into pixels."""
    # each group's measurement, through the class's own pseudo-inverse: its layout and signs need no knowing
    y = operator.Ut(operator.H(H_funcs.H_pinv(y_0).reshape(y_0.shape[0], *operator.image_shape))).contiguous()
    step = build_step(kernels, operator, y, sy, None, init_coef, owned=False)
    return step.initial, lambda xt, et, z, cf: step.advance(xt, et, z, cf, eta, eta_b, 0)


def _spectral_steps(kernels, H_funcs, uty, s, sy, init_coef, shape, eta_a, eta_b, eta_c):
    """(initial(z), advance(x_t, eps, z, coef)) by the fused spectral step between the class's own V^T and V."""
    def initial(z):
        zeros = torch.zeros(shape[0], z.shape[1], device=z.device)
        xbar = kernels.spectral_step(zeros, zeros, z, uty, s, sy, init_coef, 1.0, 1.0, 1.0, True)[0]
        return H_funcs.V(xbar).view(*shape)

    def advance(xt, et, z, cf):
        xbar = kernels.spectral_step(H_funcs.Vt(xt), H_funcs.Vt(et), z, uty, s, sy, cf, eta_a, eta_b, eta_c, True)[0]
        return H_funcs.V(xbar).view(*shape)

    return initial, advance


# --- the original's random draws for ddrm_fast operators: ddrm_sample(noise="compat") ----------------------------
class CompatNoise:
    """The original DDRM's draws, in its order and shapes, expressed in another operator's spectral layout.

    Per step the original draws (B, N) for case 3, (B, #case 2) for case 2, then (B, m) whose case-1 entries it
    uses. Case memberships depend only on the singular values and scalars, so they are found once, on the host,
    before the loop. ``to_layout`` maps a spectral vector of the original's basis to the layout the step consumes
    (None: the original's own).
    """

    seeds = None

    def __init__(self, singulars: torch.Tensor, sigma_0: float, sigma_next: torch.Tensor, batch: int, n: int,
                 generator: Generator, device, to_layout: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                 image_shape: Optional[Sequence[int]] = None):
        s = singulars.detach().to("cpu", torch.float32).reshape(-1)
        self.m = s.numel()
        self.batch, self.n, self.generator, self.device = batch, n, generator, device
        self.to_layout = to_layout
        self.image_shape = tuple(image_shape) if image_shape is not None else None
        self.after: List[torch.Tensor] = []
        self.before: List[torch.Tensor] = []
        for sn in sigma_next.detach().to("cpu", torch.float32):
            self.after.append(torch.nonzero(s * sn < sigma_0).flatten().to(device))
            self.before.append(torch.nonzero(s * sn > sigma_0).flatten().to(device))

    def _map(self, zc: torch.Tensor) -> torch.Tensor:
        return zc if self.to_layout is None else self.to_layout(zc)

    def initial(self, x_T: Optional[torch.Tensor] = None) -> torch.Tensor:
        if x_T is None:  # the original's caller draws torch.randn(B, C, H, W) first
            x_T = randn((self.batch, *self.image_shape), self.generator, device=self.device)
        return self._map(x_T.reshape(self.batch, self.n))

    def step(self, i: int) -> torch.Tensor:
        b = self.batch
        after, before = self.after[i], self.before[i]
        z = randn((b, self.n), self.generator, device=self.device)
        z_after = randn((b, after.numel()), self.generator, device=self.device)
        z_meas = randn((b, self.m), self.generator, device=self.device)
        z = z.index_copy(1, after, z_after).index_copy(1, before, z_meas.index_select(1, before))
        return self._map(z)


@functools.singledispatch
def equivalent(operator: O.LinearOperator) -> Optional[H_functions]:
    """The original DDRM's operator with the same H as a ddrm_fast operator, or None: the spectral basis
    ``noise='compat'`` takes the original's draws from."""
    return None


@equivalent.register
def _(operator: O.Denoise):
    c, h, w = operator.image_shape
    return Denoising(c, h, operator.device) if h == w else None


@equivalent.register
def _(operator: O.Inpaint):
    c, h, w = operator.image_shape
    if h != w or operator.observed.shape[0] != 1:
        return None
    missing = operator.missing_order
    if missing is None:  # the original indexes pixels pixel-major: index = pixel * C + channel
        pixel_major = operator.observed[0].reshape(c, h * w).t().reshape(-1)
        missing = torch.nonzero(pixel_major == 0).flatten()
    return Inpainting(c, h, missing.to(operator.device), operator.device)


@equivalent.register
def _(operator: O.SuperRes):
    c, h, w = operator.image_shape
    return SuperResolution(c, h, operator.ratio, operator.device) if h == w and operator.observed is None else None


@equivalent.register
def _(operator: O.Colorize):
    c, h, w = operator.image_shape
    if h != w or c != 3 or operator.observed is not None:
        return None
    return Colorization(h, operator.device, weights=operator.weights.tolist())


def _compat_noise(request: NoiseRequest) -> CompatNoise:
    """``noise='compat'``: the original's draws mapped into the layout the sampler's step consumes."""
    operator = request.operator
    legacy = equivalent(operator)
    if legacy is None:
        raise ValueError(f"noise='compat': {operator!r} has no equivalent in the original DDRM code")
    if request.sigma_y.numel() != 1:
        raise ValueError("noise='compat' needs a scalar sigma_y (the original has one noise level)")
    layout = tuple(request.shape)
    if len(layout) == 4:  # image-layout noise (group operators)
        to_layout = lambda z: legacy.V(z).reshape(layout)  # noqa: E731
    else:
        to_layout = lambda z: operator.Vt(legacy.V(z))  # noqa: E731
    return CompatNoise(legacy.singulars(), float(request.sigma_y), request.sigma_next, layout[0], operator.n,
                       request.generator, request.device, to_layout, operator.image_shape)


register_noise("compat", _compat_noise)


# --- the original runner's degradations (runners/diffusion.py), by its --deg names ----------------------------------
def _bicubic_kernel(factor: int) -> torch.Tensor:
    """The original's bicubic downsampling kernel (a = -0.5, 4 * factor taps), normalised, float32."""
    def cubic(x: float, a: float = -0.5) -> float:
        x = abs(x)
        if x <= 1:
            return (a + 2) * x**3 - (a + 3) * x**2 + 1
        if x < 2:
            return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
        return 0.0

    taps = torch.tensor([cubic((i - (factor * 4) // 2 + 0.5) / factor) for i in range(factor * 4)],
                        dtype=torch.float64)
    return (taps / taps.sum()).float()


def _gaussian_taps(sigma: float, half: int) -> torch.Tensor:
    """exp(-x^2 / (2 sigma^2)) at x = -half..half, float32 (normalised by the caller, as the original does)."""
    return torch.tensor([math.exp(-0.5 * (x / sigma) ** 2) for x in range(-half, half + 1)], dtype=torch.float32)


RUNNER_DEGRADATIONS = re.compile(r"^(deno|inp|inp_lolcat|inp_lorem|sr[1-9]\d*|sr_bicubic[1-9]\d*|deblur_uni|"
                                 r"deblur_gauss|deblur_aniso|color|cs[1-9]\d*)$")


def check_runner_degradation(deg: str, mask_given: bool) -> None:
    """A ValueError unless ``deg`` is one of the original runner's --deg values (with its mask when it needs one)."""
    if not RUNNER_DEGRADATIONS.match(deg):
        raise ValueError(f"--deg {deg!r}: not a degradation of the original runner (deno, inp, inp_lolcat, "
                         f"inp_lorem, srN, sr_bicubicN, deblur_uni, deblur_gauss, deblur_aniso, color, csN)")
    if deg in ("inp_lolcat", "inp_lorem") and not mask_given:
        raise ValueError(f"--deg {deg} needs its mask file (--mask)")


def runner_operator(deg: str, channels: int, image_size: int, device, mask: Optional[torch.Tensor] = None):
    """The ``H_functions`` the original runner builds for ``--deg`` (deno, inp, inp_lolcat, inp_lorem, srN,
    sr_bicubicN, deblur_uni, deblur_gauss, deblur_aniso, color, csN), drawing from torch's global generator where the
    original does (the random half of the pixels of ``inp``, the permutation of ``csN``). ``mask`` (image_size^2
    values, 0 = missing) is the mask file of ``inp_lolcat`` / ``inp_lorem``."""
    s = image_size
    if deg.startswith("cs") and deg[2:].isdigit():
        return WalshHadamardCS(channels, s, int(deg[2:]), torch.randperm(s**2, device=device), device)
    if deg in ("inp", "inp_lolcat", "inp_lorem"):
        if deg == "inp":
            missing_r = torch.randperm(s**2)[: s**2 // 2].to(device).long() * 3
        else:
            missing_r = torch.nonzero(mask.to(device).reshape(-1) == 0).long().reshape(-1) * 3
        missing = torch.cat([missing_r, missing_r + 1, missing_r + 2], dim=0)
        return Inpainting(channels, s, missing, device)
    if deg == "deno":
        return Denoising(channels, s, device)
    if deg.startswith("sr_bicubic") and deg[10:].isdigit():
        kernel = _bicubic_kernel(int(deg[10:])).to(device)
        return SRConv(kernel / kernel.sum(), channels, s, device, stride=int(deg[10:]))
    if deg == "deblur_uni":
        return Deblurring(torch.tensor([1 / 9] * 9, device=device), channels, s, device)
    if deg == "deblur_gauss":
        kernel = _gaussian_taps(10, 2).to(device)
        return Deblurring(kernel / kernel.sum(), channels, s, device)
    if deg == "deblur_aniso":
        k2, k1 = _gaussian_taps(20, 4).to(device), _gaussian_taps(1, 4).to(device)
        return Deblurring2D(k1 / k1.sum(), k2 / k2.sum(), channels, s, device)
    if deg.startswith("sr") and deg[2:].isdigit():
        return SuperResolution(channels, s, int(deg[2:]), device)
    if deg == "color":
        return Colorization(s, device)
    raise AssertionError(deg)  # check_runner_degradation lets through only the names above
