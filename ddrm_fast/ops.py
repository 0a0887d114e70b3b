"""The op surface: each op's schema, fake (meta) implementation and documentation, written once, for every namespace.

Two namespaces carry the same ops with the same schemas:

- ``torch.ops.ddrm_fast.*``: the compiled extension ``ddrm_fast._C`` registers CPU and CUDA kernels for them
  (``csrc/``, ``TORCH_LIBRARY_IMPL`` only: the schemas are the ones here);
- ``torch.ops.ddrm_fast_triton.*``: the Triton kernels (:mod:`ddrm_fast.triton`).

:func:`define` defines a namespace's ops and registers their fakes; :func:`function` generates the Python wrapper of
an op in a namespace (its signature and defaults read off the schema); the backend table
(:mod:`ddrm_fast.backends`) holds those wrappers. A new flag of an op touches its schema here, the kernels and
:mod:`ddrm_fast.reference`, nothing else. The extension is optional: without it (``DDRM_FAST_SKIP_EXT=1`` at
install, or no compiler) the package works on the reference backend, and :func:`has_cpu` / :func:`has_cuda` say False.
"""
from __future__ import annotations

import inspect
from typing import Callable, Dict, NamedTuple, Optional

import torch

from ._utils import check_same_device

__all__ = ["OpDef", "OPS", "NAMESPACES", "define", "function", "has_cpu", "has_cuda", "extension_error",
           "spectral_step", "group_step"]


class OpDef(NamedTuple):
    """One op: its schema (arguments and returns, without the name), its fake implementation (shapes only, for
    meta tensors, ``torch.compile`` and ``opcheck``) and its documentation."""

    schema: str
    fake: Callable
    doc: str


def _spectral_step_fake(xbar, epsbar, z, uty, s, sigma_y, coef, eta, eta_b, eta_c=None, legacy_zero_singulars=False,
                        seeds=None, offset=0):
    # a meta tensor among real ones routes the call here: refuse mixed devices rather than return uninitialised memory
    check_same_device(dict(xbar=xbar, epsbar=epsbar, z=z, uty=uty, s=s, sigma_y=sigma_y, coef=coef, seeds=seeds))
    return torch.empty_like(xbar, dtype=torch.float32), torch.empty_like(xbar, dtype=torch.float32)


def _group_step_fake(x, eps, y, weights, observed, sigma_y, coef, z, seeds, offset, group_shape, eta, eta_b,
                     want_x0=False, clip_x0=False):
    check_same_device(dict(x=x, eps=eps, y=y, weights=weights, observed=observed, sigma_y=sigma_y, coef=coef, z=z,
                           seeds=seeds))
    out = torch.empty_like(x, dtype=torch.float32)
    return out, (torch.empty_like(out) if want_x0 else x.new_empty((0,), dtype=torch.float32))


OPS: Dict[str, OpDef] = {
    "spectral_step": OpDef(
        "(Tensor xbar, Tensor epsbar, Tensor? z, Tensor uty, Tensor s, Tensor sigma_y, Tensor coef, float eta, "
        "float eta_b, float? eta_c=None, bool legacy_zero_singulars=False, Tensor? seeds=None, int offset=0) "
        "-> (Tensor, Tensor)",
        _spectral_step_fake,
        """The three-case DDRM update on V^T-space tensors, fused with the x0 prediction: the compiled
    :func:`ddrm_fast.reference.spectral_step` (same arguments, same results to float32 rounding).

    xbar, epsbar, z: (B, N); uty: (B, m); s: (1|B, m); sigma_y: (1|B, 1|m); coef: (4,) on the same device.
    ``eta_c`` defaults to ``eta``. Noise: ``z``, or (z None) in-kernel Philox from per-sample ``seeds`` (B,) int64 at
    ``offset``, element j of a row being coordinate j (the numbers of ``reference.philox_normal(seeds, offset, N)``).
    Returns (sqrt(abar') * new, x0bar), float32 (B, N)."""),
    "group_step": OpDef(
        "(Tensor x, Tensor eps, Tensor y, Tensor weights, Tensor? observed, Tensor sigma_y, Tensor coef, Tensor? z, "
        "Tensor? seeds, int offset, int[] group_shape, float eta, float eta_b, bool want_x0=False, "
        "bool clip_x0=False) -> (Tensor, Tensor)",
        _group_step_fake,
        """One DDRM step for a rank-one-per-group operator, in one pass: the compiled
    :func:`ddrm_fast.reference.group_step` (one read of x_t and eps, one write of x_{t'}); ``clip_x0`` clamps x0 to
    [-1, 1] (eps made consistent with it) in the same pass.

    x, eps: (B, C, H, W) float32/float16/bfloat16, any strides (eps may be the first C channels of a 2C output).
    y: (B, G) float32; weights (n,); observed (1|B, G) or None; sigma_y (1|B, 1|G); coef (4,).
    Noise: ``z`` (B, C, H, W) float32, or (z None) in-kernel Philox from per-sample ``seeds`` (B,) int64 at
    ``offset`` (the numbers of :func:`ddrm_fast.reference.philox_normal`). Returns (x_{t'}, x0 or an empty tensor),
    float32."""),
}
#: namespace -> what runs its kernels (for the docs of the generated wrappers)
NAMESPACES = {"ddrm_fast": "the compiled extension ddrm_fast._C (CPU, CUDA)", "ddrm_fast_triton": "Triton"}
_LIBRARIES: Dict[str, torch.library.Library] = {}


def define(namespace: str) -> None:
    """Define every op of :data:`OPS` in ``namespace`` (once) and register its fake implementation there."""
    if namespace in _LIBRARIES:
        return
    lib = torch.library.Library(namespace, "DEF")
    for name, op in OPS.items():
        lib.define(name + op.schema)
        torch.library.register_fake(f"{namespace}::{name}", op.fake, lib=lib)
    _LIBRARIES[namespace] = lib


def function(namespace: str, name: str, ready: Optional[Callable[[], None]] = None) -> Callable:
    """The Python wrapper of op ``name`` in ``namespace``: ``torch.ops.<namespace>.<name>`` with the schema's
    signature and defaults and the op's documentation. ``ready()``, when given, runs before each call (it loads
    the kernels, or raises when they cannot run here)."""
    define(namespace)
    packet = getattr(getattr(torch.ops, namespace), name)
    schema = packet.default._schema

    def call(*args, **kwargs):
        if ready is not None:
            ready()
        return packet(*args, **kwargs)

    call.__signature__ = inspect.Signature([
        inspect.Parameter(a.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          default=a.default_value if a.has_default_value() else inspect.Parameter.empty)
        for a in schema.arguments])
    call.__name__ = call.__qualname__ = name
    call.__module__ = __name__
    call.__doc__ = f"``torch.ops.{namespace}.{name}`` ({NAMESPACES[namespace]}).\n\n    {OPS[name].doc}"
    return call


# --- the compiled extension: registers CPU (and CUDA) kernels for torch.ops.ddrm_fast.* -------------------------------
define("ddrm_fast")  # before the extension loads: its kernels are for these schemas
try:
    from . import _C  # noqa: F401
    _EXT_ERROR: Optional[str] = None
except ImportError as exc:  # built without the extension, or a broken build: the reference backend still works
    _C = None
    _EXT_ERROR = str(exc)


def has_cpu() -> bool:
    """True when the compiled CPU kernels are loaded."""
    return _C is not None


def has_cuda() -> bool:
    """True when the extension was built with its CUDA kernels and a GPU is visible."""
    return _C is not None and bool(_C.built_with_cuda()) and torch.cuda.is_available()


def extension_error() -> Optional[str]:
    """Why ``ddrm_fast._C`` did not load (None when it did)."""
    return _EXT_ERROR


def _extension_ready() -> None:
    if _C is None:
        raise RuntimeError(f"ddrm_fast._C is not available: {_EXT_ERROR}")


spectral_step = function("ddrm_fast", "spectral_step", _extension_ready)
group_step = function("ddrm_fast", "group_step", _extension_ready)
