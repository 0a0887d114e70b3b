"""``operators.check(op)``: test an operator's SVD on random probes before DDRM samples with it.

DDRM trusts the operator completely: a V that is not orthogonal, or an H that disagrees with U S V^T, gives plausible
images that are silently wrong. The check measures every identity the sampler relies on and names each one that
fails, with its error.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

import torch

from .base import LinearOperator

__all__ = ["check", "OperatorCheckError"]


class OperatorCheckError(ValueError):
    """The operator fails identities of :func:`check`; the message has one line per failure."""


def _rel(a: torch.Tensor, b: torch.Tensor, scale: Optional[torch.Tensor] = None) -> float:
    """||a - b|| / scale (default ||b||), in float64."""
    a, b = a.double().reshape(a.shape[0], -1), b.double().reshape(b.shape[0], -1)
    den = b.norm() if scale is None else scale
    return float((a - b).norm() / max(float(den), 1e-30))


def _shape_failures(op: LinearOperator, x, w, v, y) -> List[str]:
    """One line per method whose output has the wrong shape or dtype for the probes (or raises), and for singular
    values that are not finite, >= 0, of length m."""
    b, n, m = x.shape[0], op.n, op.m
    failures = []
    try:
        s = op.singulars()
        ok = isinstance(s, torch.Tensor) and s.shape[-1] == m and s.dim() in (1, 2)
        if not ok or not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
            failures.append(f"singulars: must be finite values >= 0 of shape ({m},) or (B, {m}), got "
                            f"{tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__}")
        for name, fn, arg, shape in (("V^T", op.Vt, x, (b, n)), ("V", op.V, w, (b, n)), ("U", op.U, v, (b, m)),
                                     ("U^T", op.Ut, y, (b, m)), ("H", op.H, x, (b, *op.y_shape)),
                                     ("add_zeros", op.add_zeros, v, (b, n))):
            t = fn(arg)
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != tuple(shape) or t.dtype != torch.float32:
                got = f"{tuple(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
                failures.append(f"{name} shape and dtype: expected a float32 tensor of shape {tuple(shape)}, got {got}")
    except Exception as exc:  # noqa: BLE001 - whatever a broken operator raises is the failure
        failures.append(f"shapes: raised {type(exc).__name__}: {exc}")
    return failures


def check(op: LinearOperator, *, tol: float = 1e-4, batch: Optional[int] = None,
          generator: Optional[torch.Generator] = None) -> Dict[str, float]:
    """Test ``op`` on random float32 probes; returns {identity: relative error} when all hold, else raises
    :class:`OperatorCheckError` with one line per failing identity (its name, its error, the tolerance).

    The identities: shapes and dtypes of V, V^T, U, U^T, H and the singular values (m <= N, finite, >= 0);
    V^T V = I and V V^T = I; U^T U = I and U U^T = I; H x = U S V^T x (natural-layout H against the SVD);
    <H x, y> = <x, H^T y>; ``add_zeros`` pads with zeros; ``H_pinv`` = V S^+ U^T; H H^+ H = H. Errors are relative to
    the norm of the probe (times the largest singular value for H). Where an operator declares a ``zero_threshold``
    (singular values under it count as unmeasured), H's identities allow the truncation: that threshold times
    ||x|| more.

    Args:
        op: the operator, a :class:`LinearOperator`.
        tol: the largest relative error accepted (float32 arithmetic reaches about 1e-6).
        batch: the probes' batch (default: the operator's own, or 2).
        generator: for the probes (default: a fixed seed, so a check repeats).
    """
    if not isinstance(op, LinearOperator):
        raise OperatorCheckError(f"op must be a ddrm_fast.operators.LinearOperator, got {type(op).__name__}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    b = batch or op.batch or 2
    n, m = op.n, op.m
    errors: Dict[str, float] = {}
    failures: List[str] = []

    def measure(name: str, fn: Callable[[], float]) -> None:
        try:
            errors[name] = fn()
        except Exception as exc:  # an identity that cannot even be evaluated fails, named
            failures.append(f"{name}: raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            return
        if not errors[name] <= tol:  # NaN fails too
            failures.append(f"{name}: relative error {errors[name]:.2e} (tolerance {tol:.0e})")

    if m > n or m < 1:
        raise OperatorCheckError(f"{type(op).__name__} fails operators.check:\n  sizes: m = {m} measurements must be "
                                 f"between 1 and N = {n}")
    device = op.device
    x = torch.randn(b, *op.image_shape, generator=g).to(device)
    w = torch.randn(b, n, generator=g).to(device)
    v = torch.randn(b, m, generator=g).to(device)
    y = torch.randn(b, *op.y_shape, generator=g).to(device)
    failures += _shape_failures(op, x, w, v, y)
    if failures:
        raise OperatorCheckError(f"{type(op).__name__} fails operators.check:\n  " + "\n  ".join(failures))
    s = op.singulars()

    s = s.float().expand(b, m)
    s_max = s.abs().max().clamp(min=1e-30)
    cut = float(getattr(op, "zero_threshold", 0.0)) * float(x.double().norm())  # the truncation it declares
    h_scale = s_max * x.double().norm()

    def svd_H(t):
        return op.U(s * op.Vt(t)[:, :m]).reshape(b, *op.y_shape)

    def pinv(t):
        uty = op.Ut(t)
        return op.V(op.add_zeros(torch.where(s > 0, uty / torch.where(s > 0, s, torch.ones_like(s)), 0.0)))

    measure("V^T V = I", lambda: _rel(op.Vt(op.V(w)), w))
    measure("V V^T = I", lambda: _rel(op.V(op.Vt(x)), x))
    measure("U^T U = I", lambda: _rel(op.Ut(op.U(v)), v))
    measure("U U^T = I", lambda: _rel(op.U(op.Ut(y)), y))
    measure("H x = U S V^T x", lambda: max(0.0, _rel(op.H(x), svd_H(x), h_scale) - cut / float(h_scale)))
    measure("<H x, y> = <x, H^T y>", lambda: max(0.0, abs(float((op.H(x).double() * y.double()).sum()
                                                                - (x.double() * op.Ht(y).double()).sum()))
                                                    / float(h_scale * y.double().norm()) - cut / float(h_scale)))
    measure("add_zeros pads with zeros", lambda: _rel(op.add_zeros(v), torch.cat([v, v.new_zeros(b, n - m)], 1)))
    measure("H_pinv = V S^+ U^T", lambda: _rel(op.H_pinv(y), pinv(y)))
    measure("H H^+ H = H", lambda: max(0.0, _rel(op.H(op.H_pinv(op.H(x))), op.H(x), h_scale) - cut / float(h_scale)))
    if failures:
        raise OperatorCheckError(f"{type(op).__name__} fails operators.check:\n  " + "\n  ".join(failures))
    return errors
