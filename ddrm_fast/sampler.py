"""The DDRM sampler (Kawar et al. 2022, Algorithm 1 with eta_A = eta_C = eta) over any operator's SVD."""
from __future__ import annotations

import weakref
from typing import Callable, List, Optional, Sequence, Union

import torch

from . import reference
from ._utils import Generator, progress_bar, randn
from .diffusion import take_eps
from .operators.base import LinearOperator
from .operators.group import GroupOperator
from .schedules import abar_table, ddrm_timesteps, linear_betas

__all__ = ["ddrm_sample", "clear_graphs", "BACKENDS", "COMPILE_MODES"]

BACKENDS = ("auto", "reference", "cpu", "cuda", "triton")
NOISE = ("torch", "compat", "philox")

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _sigma_y_tensor(sigma_y, operator: LinearOperator, batch: int, device) -> torch.Tensor:
    """sigma_y as a (1|B, m) float32 tensor: a float, a per-sample (B,) tensor or a map broadcastable to y."""
    if isinstance(sigma_y, bool) or not isinstance(sigma_y, (int, float, torch.Tensor)):
        raise ValueError(f"sigma_y must be a float or a tensor, got {type(sigma_y).__name__}")
    if isinstance(sigma_y, torch.Tensor) and (sigma_y.is_complex() or sigma_y.dtype == torch.bool):
        raise ValueError(f"sigma_y must be real numbers, got {sigma_y.dtype}")
    sy = torch.as_tensor(sigma_y, dtype=torch.float32, device=device)
    if not bool(torch.isfinite(sy).all()):
        raise ValueError("sigma_y must be finite")
    if bool((sy < 0).any()):
        raise ValueError("sigma_y must be >= 0")
    if sy.numel() == 1:
        return sy.reshape(1, 1)
    if sy.dim() == 1 and sy.shape[0] == batch:
        return sy.reshape(batch, 1)
    if not operator.identity_U:
        raise ValueError(f"sigma_y: a per-coordinate noise map needs an operator whose U is the identity "
                         f"({type(operator).__name__} mixes measurements); give a float or a per-sample (B,) tensor")
    try:
        full = torch.broadcast_to(sy, (batch, *operator.y_shape))
    except RuntimeError:
        raise ValueError(f"sigma_y of shape {tuple(sy.shape)} is neither a float, a per-sample ({batch},) tensor, nor "
                         f"broadcastable to y's shape {(batch, *operator.y_shape)}") from None
    return full.reshape(batch, operator.m)


# --- noise sources: per step a standard normal in the layout the step consumes ---------------------------------------
# Group operators consume image-layout noise (the one-pass kernels add it pixel by pixel; the reference maps it with
# V^T), explicit-V operators spectral (B, N) noise.
INIT_OFFSET = 1 << 32  # Philox counter offset of the initial draw; step i uses offset i


class _TorchNoise:
    """Noise from torch's generators, drawn in ``shape`` (image or spectral layout)."""

    seeds = None

    def __init__(self, shape, generator: Generator, device):
        self.shape, self.generator, self.device = tuple(shape), generator, device

    def initial(self) -> torch.Tensor:
        return randn(self.shape, self.generator, device=self.device)

    def step(self, i: int) -> torch.Tensor:
        return randn(self.shape, self.generator, device=self.device)


class _PhiloxNoise:
    """Counter-based noise: sample b's draws depend only on seeds[b] and the step, never on the batch around it.

    With ``in_kernel`` the kernels generate it themselves (``step`` returns None); otherwise it is materialised with
    :func:`ddrm_fast.reference.philox_normal`, the same numbers.
    """

    def __init__(self, seeds: torch.Tensor, shape, in_kernel: bool):
        self.seeds, self.shape, self.in_kernel = seeds, tuple(shape), in_kernel

    def _draw(self, offset: int) -> Optional[torch.Tensor]:
        if self.in_kernel:
            return None
        numel = 1
        for d in self.shape[1:]:
            numel *= d
        return reference.philox_normal(self.seeds, offset, numel).reshape(self.shape)

    def initial(self) -> Optional[torch.Tensor]:
        return self._draw(INIT_OFFSET)

    def step(self, i: int) -> Optional[torch.Tensor]:
        return self._draw(i)


def philox_seeds(generator: Generator, batch: int, device) -> torch.Tensor:
    """Per-sample 62-bit Philox keys: one from each per-sample generator (batch-independent), else B from the one
    generator (or torch's global one)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        gens = list(generator)
        if len(gens) != batch:
            raise ValueError(f"generator: got {len(gens)} per-sample generators for a batch of {batch}")
        seeds = torch.cat([torch.randint(0, 2**62, (1,), generator=g, device=g.device).cpu() for g in gens])
    elif generator is not None:
        seeds = torch.randint(0, 2**62, (batch,), generator=generator, device=generator.device).cpu()
    else:
        seeds = torch.randint(0, 2**62, (batch,))
    return seeds.to(device)


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


# --- the sampler ------------------------------------------------------------------------------------------------------
def _check_generator(generator, batch: int) -> None:
    """None, one torch.Generator, or a sequence of one per sample."""
    if generator is None or isinstance(generator, torch.Generator):
        return
    if isinstance(generator, (list, tuple)) and all(isinstance(g, torch.Generator) for g in generator):
        if len(generator) != batch:
            raise ValueError(f"generator: got {len(generator)} per-sample generators for a batch of {batch}")
        return
    raise ValueError(f"generator must be None, a torch.Generator or a list of one per sample, got "
                     f"{type(generator).__name__}" + (" of other things" if isinstance(generator, (list, tuple))
                                                       else ""))


def _check_real(t: torch.Tensor, name: str) -> None:
    if t.is_complex():
        raise ValueError(f"{name} must be real, got {t.dtype}")


def _model_eps(out, x: torch.Tensor, channels: int) -> torch.Tensor:
    """eps from the model's output, checked by shape and dtype only (no value is read: the loop never waits)."""
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"model must return a tensor, got {type(out).__name__}")
    if not out.is_floating_point():
        raise ValueError(f"model returned {out.dtype}; expected a real floating-point tensor")
    if out.dim() != 4 or out.shape[0] != x.shape[0] or out.shape[2:] != x.shape[2:]:
        raise ValueError(f"model returned shape {tuple(out.shape)} for x_t of shape {tuple(x.shape)}; expected "
                         f"({x.shape[0]}, {channels} or {2 * channels}, {x.shape[2]}, {x.shape[3]})")
    eps = take_eps(out, channels)
    # the kernels read float32/16/bf16; a float64 model is honoured at float32, as every backend computes
    return eps.float() if eps.dtype == torch.float64 else eps


def _check_scalar(name: str, value, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a float, got {type(value).__name__}")
    if not lo <= float(value) <= hi:
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got {value}")
    return float(value)


def _resolve_backend(backend: str, device: torch.device) -> str:
    from . import ops
    from .triton import available as triton_available

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        if device.type == "cuda":
            return "cuda" if ops.has_cuda() else ("triton" if triton_available() else "reference")
        return "cpu" if (device.type == "cpu" and ops.has_cpu()) else "reference"
    if backend == "cpu" and (device.type != "cpu" or not ops.has_cpu()):
        raise ValueError("backend='cpu' needs CPU tensors and the compiled extension (ddrm_fast._C)")
    if backend == "cuda" and (device.type != "cuda" or not ops.has_cuda()):
        raise ValueError("backend='cuda' needs CUDA tensors and the extension built with CUDA")
    if backend == "triton" and not triton_available():
        raise ValueError("backend='triton' needs triton and a CUDA device (or TRITON_INTERPRET=1 on the CPU)")
    return backend


def _kernels(backend: str):
    """(spectral_step, group_step) of a backend, with the signatures of :mod:`ddrm_fast.ops`."""
    from . import ops

    if backend in ("cpu", "cuda"):
        return ops.spectral_step, ops.group_step
    from .triton import group_step, spectral_step  # noqa: F401  (importing registers the ops)

    def spectral(xbar, epsbar, z, uty, s, sigma_y, coef, eta, eta_b, eta_c=None, legacy_zero_singulars=False,
                 seeds=None, offset=0):
        return torch.ops.ddrm_fast_triton.spectral_step(xbar, epsbar, z, uty, s, sigma_y, coef, eta, eta_b,
                                                        eta if eta_c is None else eta_c, legacy_zero_singulars,
                                                        seeds, offset)

    def group(x, eps, y, weights, observed, sigma_y, coef, group_shape, eta, eta_b, z=None, seeds=None, offset=0,
              want_x0=False):
        return torch.ops.ddrm_fast_triton.group_step(x, eps, y, weights, observed, sigma_y, coef, z, seeds, offset,
                                                     list(group_shape), eta, eta_b, want_x0)

    return spectral, group


_COMPILED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> {mode: compiled model}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_OWN_GRAPHS = ("reduce-overhead", "max-autotune")  # modes that capture CUDA graphs of their own


def _compile_mode(compile: Union[bool, str], cuda_graph: bool) -> Optional[str]:
    """``compile`` as a torch.compile mode (None: not compiled)."""
    if compile is False:
        return None
    mode = "default" if compile is True else compile
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile must be True, False or one of {COMPILE_MODES}, got {compile!r}")
    if cuda_graph and mode in _OWN_GRAPHS:
        raise ValueError(f"compile={mode!r} captures CUDA graphs itself; with cuda_graph=True use 'default' or "
                         f"'max-autotune-no-cudagraphs' (the sampler captures the whole loop)")
    return mode


def _network(model: Model, dtype: Optional[torch.dtype], channels_last: bool, compile_mode: Optional[str],
             device) -> Model:
    """The model call of the loop: optionally compiled, fed channels_last, under autocast."""
    if dtype not in (None, torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"model_dtype must be None, torch.float32, torch.float16 or torch.bfloat16, got {dtype}")
    if compile_mode is not None:
        if not isinstance(model, torch.nn.Module):
            raise ValueError("compile needs the model to be a torch.nn.Module")
        compiled = _COMPILED.setdefault(model, {})
        if compile_mode not in compiled:
            compiled[compile_mode] = torch.compile(model, mode=compile_mode)
        model = compiled[compile_mode]
    if dtype in (None, torch.float32) and not channels_last:
        return model

    def net(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if dtype in (None, torch.float32):
            return model(x, t)
        # no weight-cast cache: each call is its own autocast region anyway, and CUDA graph capture forbids it
        with torch.autocast(device.type, dtype=dtype, cache_enabled=False):
            return model(x, t)

    return net


class _CudaGraph:
    """A CUDA graph of ``fn``: warmed up on a side stream, captured once, replayed on demand."""

    def __init__(self, device: torch.device):
        self.device, self.graph = device, torch.cuda.CUDAGraph()

    def capture(self, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):  # lazy initialisation, cuDNN autotuning and compilation happen outside the capture
                fn()
        torch.cuda.current_stream(self.device).wait_stream(side)
        with torch.cuda.graph(self.graph):
            return fn()

    def replay(self) -> None:
        self.graph.replay()


class _GraphCache:
    """Captured sampling loops, keyed by everything the capture bakes in (model, operator, shapes, steps, scalars).

    A capture reads its inputs from the tensors of the call that captured it; a later call with the same key copies
    its own inputs (measurements, sigma_y, seeds, noise) into them and replays. ``make`` builds the graph object
    (``_CudaGraph``; tests on the CPU substitute one that reruns the function, which checks the buffer handling).
    """

    def __init__(self, size: int = 4):
        self.size, self.entries, self.make = size, {}, _CudaGraph

    def clear(self) -> None:
        """Drop every captured graph and the memory it holds."""
        self.entries.clear()

    def run(self, key, owners: tuple, inputs: dict, fn: Callable[[dict], torch.Tensor], device) -> torch.Tensor:
        """Replay the graph of ``key`` (capturing it first if needed); ``owners`` are the objects whose ids the key
        holds (model, operator), checked to be the same objects."""
        entry = self.entries.get(key)
        if entry is not None and any(ref() is not o for ref, o in zip(entry["owners"], owners)):
            entry = None  # ids reused by new objects
        if entry is None:
            if len(self.entries) >= self.size:
                self.entries.pop(next(iter(self.entries)))
            graph = self.make(device)
            statics = dict(inputs)
            out = graph.capture(lambda: fn(statics))
            entry = {"graph": graph, "out": out, "statics": statics, "owners": [weakref.ref(o) for o in owners]}
            self.entries[key] = entry
        else:
            self.entries[key] = self.entries.pop(key)  # most recently used last
            for name, value in inputs.items():
                if value is not None:
                    entry["statics"][name].copy_(value)
        entry["graph"].replay()
        return entry["out"].clone()


_GRAPHS = _GraphCache()


def clear_graphs() -> None:
    """Free the CUDA graphs ``ddrm_sample(cuda_graph=True)`` keeps for replay."""
    _GRAPHS.clear()


@torch.no_grad()  # sampling never records autograd history, whatever the caller's mode or the model's parameters
def ddrm_sample(model: Model, y: torch.Tensor, operator: LinearOperator, sigma_y, *, steps: int = 20,
                eta: float = 0.85, eta_b: float = 1.0, schedule: Optional[torch.Tensor] = None,
                generator: Generator = None, noise: str = "torch", backend: str = "reference",
                x_T: Optional[torch.Tensor] = None, callback: Optional[Callable[[dict], None]] = None,
                progress: bool = False, model_dtype: Optional[torch.dtype] = None, channels_last: bool = False,
                compile: Union[bool, str] = False, cuda_graph: bool = False) -> torch.Tensor:
    """Restore images from y = H x + z with DDRM (Kawar et al. 2022); returns the restored batch (B, C, H, W).

    Runs under ``torch.no_grad()``: no autograd history is recorded, whatever the caller's mode. Arguments it cannot
    honour raise a ValueError naming the argument before any work, on every backend alike.

    Args:
        model: ``model(x_t, t) -> eps`` with t a float (B,) tensor of timesteps; 2C output channels keep the first C.
        y: measurements, natural layout (B, *operator.y_shape) or flat (B, m); finite.
        operator: a :class:`ddrm_fast.operators.LinearOperator`.
        sigma_y: measurement noise std in y's units (images in [-1, 1]): a float, a per-sample (B,) tensor, or a
            per-coordinate map broadcastable to y (heterogeneous noise; needs an operator with U = I).
        steps: number of DDRM steps over ``range(0, T, T // steps)``.
        eta: eta_A = eta_C, the stochasticity of the steps (0: deterministic where not pulled to y).
        eta_b: eta_B, the weight of y in coordinates noisier than y.
        schedule: betas (T,); default DDPM's linear 1e-4..0.02 over 1000 steps.
        generator: None (torch's global generator), a ``torch.Generator``, or one generator per sample (each sample's
            noise then comes from its own stream alone).
        noise: ``"torch"``: standard normals from ``generator`` each step (image layout for group operators,
            spectral for the others); ``"philox"``: counter-based noise from one 62-bit seed per sample (taken from
            ``generator``), generated inside the fused kernels, identical on every backend; ``"compat"``: the
            original DDRM's draws exactly (order and shapes), mapped into this operator's basis, so the same seed
            gives the original's numbers (needs an operator with an equivalent in the original code).
        backend: ``"reference"`` (plain PyTorch over the SVD), ``"cpu"`` / ``"cuda"`` (compiled kernels),
            ``"triton"``, or ``"auto"`` (the fastest available). Group operators (denoise, inpaint, block SR,
            colorize) take the one-pass grouped step on the fused backends, the others the fused spectral step.
        x_T: the initial standard-normal draw, (B, C, H, W), read in the layout ``noise`` draws in; drawn if None.
        callback: called after every step with a dict: ``i``, ``t``, ``t_next``, ``x`` (x_{t'}), ``x0`` (prediction).
        progress: show a progress bar over the steps.
        model_dtype: run the model under ``torch.autocast`` in this dtype (``torch.bfloat16``/``torch.float16``);
            the DDRM update stays float32 (the kernels read half-precision eps and compute in float32).
        channels_last: hand the model its input in channels_last memory format (faster convolutions on GPUs).
        compile: run the model through ``torch.compile``: True (its default mode) or a mode name from
            ``COMPILE_MODES``; compiled once per model and mode, and kept for later calls. With ``cuda_graph``
            only the modes without CUDA graphs of their own ("default", "max-autotune-no-cudagraphs").
        cuda_graph: capture the whole loop (model and steps) in a CUDA graph and replay it: no launch overhead
            and no host work per step. The first call with a given model, operator, batch shape and settings
            captures (after two warm-up runs); later calls copy their measurements, sigma_y and noise into the
            captured buffers and replay. On the fused group steps (denoising, inpainting, block SR, colorization)
            the operator's weights and mask are inputs too, so a new operator of the same kind and shape (a
            per-batch mask) replays the same graph; other operators are captured once per operator object.
            Results equal eager mode given the same noise. Needs CUDA tensors and a capturable model; no
            ``callback`` or ``progress``. :func:`clear_graphs` frees the graphs. With
            ``noise="torch"``/``"compat"`` every step's noise is drawn before the replay (one image-sized buffer
            per step and sample); ``noise="philox"`` is generated inside the fused kernels and needs none.
    """
    # --- checks: everything a bad argument can break is tested before any work --------------------------------------
    if not isinstance(operator, LinearOperator):
        raise ValueError(f"operator must be a ddrm_fast.operators.LinearOperator, got {type(operator).__name__}")
    if not callable(model):
        raise ValueError("model must be callable as model(x_t, t)")
    y_flat = operator.check_y(y, "y")
    _check_real(y_flat, "y")
    y_flat = y_flat.float()
    if y_flat.shape[0] == 0:
        raise ValueError("y has an empty batch (B = 0)")
    if not bool(torch.isfinite(y_flat).all()):
        raise ValueError("y contains NaN or Inf")
    batch = y_flat.shape[0]
    _check_generator(generator, batch)
    device = y_flat.device
    eta = _check_scalar("eta", eta, 0.0, 1.0)
    eta_b = _check_scalar("eta_b", eta_b, 0.0, 1.0)
    if noise not in NOISE:
        raise ValueError(f"noise must be one of {NOISE}, got {noise!r}")
    betas = linear_betas() if schedule is None else torch.as_tensor(schedule)
    if not betas.is_floating_point() or betas.dim() != 1 or not bool(((betas > 0) & (betas < 1)).all()):
        raise ValueError("schedule must be a 1-D tensor of betas in (0, 1)")
    seq = ddrm_timesteps(steps, betas.numel())
    sy = _sigma_y_tensor(sigma_y, operator, batch, device)
    if x_T is not None:
        x_T = operator.check_x(x_T, "x_T")
        _check_real(x_T, "x_T")
        if x_T.shape[0] != batch:
            raise ValueError(f"x_T has batch {x_T.shape[0]}, y has {batch}")
        if not bool(torch.isfinite(x_T).all()):
            raise ValueError("x_T contains NaN or Inf")
    backend = _resolve_backend(backend, device)
    if cuda_graph:
        if device.type != "cuda" and _GRAPHS.make is _CudaGraph:
            raise ValueError("cuda_graph=True needs CUDA tensors (y is on the CPU)")
        if callback is not None or progress:
            raise ValueError("cuda_graph=True runs the loop as one graph: no callback or progress bar")
        if not isinstance(model, torch.nn.Module) or not isinstance(operator, LinearOperator):
            raise ValueError("cuda_graph=True needs the model to be a torch.nn.Module (its graph is cached per model)")
    compile_mode = _compile_mode(compile, cuda_graph)
    net = _network(model, model_dtype, channels_last, compile_mode, device)
    c, h, w = operator.image_shape
    n = operator.n
    image = (batch, c, h, w)
    grouped = isinstance(operator, GroupOperator)
    fused_group = grouped and backend != "reference"

    # --- one-time set-up: scalars, measurements, noise ---------------------------------------------------------------
    seq_next = [-1] + seq[:-1]
    rev, rev_next = list(reversed(seq)), list(reversed(seq_next))
    abar = abar_table(betas.float())
    coef, sigma_T = reference.step_coefficients(abar, rev, rev_next)
    coef, sigma_T = coef.to(device), sigma_T.to(device)
    init_coef = reference.initial_coefficients(sigma_T)
    s = operator.singulars().to(device).float().reshape(-1, operator.m)
    uty = operator.Ut(y_flat)
    shape = image if grouped else (batch, n)

    if noise == "compat":
        legacy = operator.compat_equivalent()
        if legacy is None:
            raise ValueError(f"noise='compat': {operator!r} has no equivalent in the original DDRM code")
        if sy.numel() != 1:
            raise ValueError("noise='compat' needs a scalar sigma_y (the original has one noise level)")
        to_layout = (lambda z: legacy.V(z).reshape(image)) if grouped else (lambda z: operator.Vt(legacy.V(z)))
        source = CompatNoise(legacy.singulars(), float(sy), coef[:, 2], batch, n, generator, device, to_layout,
                             operator.image_shape)
    elif noise == "philox":
        # the fused kernels (group and spectral) generate it; the reference materialises the same numbers
        source = _PhiloxNoise(philox_seeds(generator, batch, device), shape, in_kernel=backend != "reference")
    else:
        source = _TorchNoise(shape, generator, device)
    if x_T is None:
        z0 = source.initial()
    else:
        z0 = source.initial(x_T.float()) if noise == "compat" else x_T.float().reshape(shape)

    # --- the loop: model, then one fused step (no host syncs, scalars on the device) --------------------------------
    ts = torch.tensor(rev, dtype=torch.float32, device=device)
    yv = uty.contiguous()
    if cuda_graph:  # a graph reads its inputs from fixed buffers: owned copies, never the caller's tensors
        yv, sy = yv.clone(), sy.clone()
        if source.seeds is not None:
            source.seeds = source.seeds.clone()
        z0 = None if z0 is None else z0.clone()
    if fused_group:
        _, group = _kernels(backend)
        obs = operator.observed.to(device) if operator.observed is not None else None
        k = operator.weights.to(device)
        if cuda_graph:  # the step reads nothing else of the operator: a graph serves any operator of this structure
            obs, k = (None if obs is None else obs.clone()), k.clone()

        def step(x, eps, z, cf, et, eb, offset):
            return group(x, eps, yv, k, obs, sy, cf, operator.group_shape, et, eb, z=z, seeds=source.seeds,
                         offset=offset)[0]

        def initial(z):  # x_t and eps are zero: their buffer lives for this call only
            zeros = torch.zeros(image, device=device)
            return step(zeros, zeros, z, init_coef, 1.0, 1.0, INIT_OFFSET)
    else:
        spectral = reference.spectral_step if backend == "reference" else _kernels(backend)[0]
        to_spec = operator.Vt if grouped else (lambda t: t)  # image-layout noise of group operators

        def spectral_noise(z, offset):  # drawn noise in the spectral layout, or the kernel's Philox seeds and offset
            return (to_spec(z), {}) if z is not None else (None, {"seeds": source.seeds, "offset": offset})

        def step(x, eps, z, cf, et, eb, offset):
            # the transforms run in float32 whatever the model's output dtype
            zv, kw = spectral_noise(z, offset)
            return operator.V(spectral(operator.Vt(x), operator.Vt(eps.float()), zv, yv, s, sy, cf, et, eb,
                                       **kw)[0]).reshape(image)

        def initial(z):
            zeros = torch.zeros(batch, n, device=device)
            zv, kw = spectral_noise(z, INIT_OFFSET)
            return operator.V(spectral(zeros, zeros, zv, yv, s, sy, init_coef, 1.0, 1.0, **kw)[0]).reshape(image)

    def loop(z_init, noise_at: Callable[[int], Optional[torch.Tensor]]) -> torch.Tensor:
        # only x_t lives across the model call; x_t, eps and x_{t'} (and drawn noise) across the step
        x = initial(z_init)
        for i in progress_bar(range(len(rev)), progress, "ddrm"):
            eps = _model_eps(net(x, ts[i].expand(batch)), x, c)
            x_next = step(x, eps, noise_at(i), coef[i], eta, eta_b, i)
            if callback is not None:
                callback({"i": i, "t": rev[i], "t_next": rev_next[i], "x": x_next,
                          "x0": (x - coef[i, 1] * eps.float()) / coef[i, 0]})
            x = x_next
            del eps, x_next
        return x

    if not cuda_graph:
        return loop(z0, source.step)
    # every step's noise is drawn before the replay, into buffers the graph reads (in-kernel Philox needs none)
    drawn = [source.step(i) for i in range(len(rev))]
    zs = None if drawn[0] is None else torch.stack(drawn)
    if fused_group:  # the operator's weights and mask are graph inputs: per-batch masks replay one graph
        op_key, owners = (type(operator).__name__, operator.image_shape, tuple(operator.group_shape),
                          None if obs is None else tuple(obs.shape)), (model,)
        inputs = {"k": k, "obs": obs}
    else:  # V, V^T and the singular values are baked into the graph: one per operator object
        op_key, owners, inputs = id(operator), (model, operator), {}
    key = (id(model), op_key, tuple(y_flat.shape), tuple(sy.shape), tuple(seq), eta, eta_b, noise, backend,
           model_dtype, channels_last, compile_mode, str(device), hash(betas.double().cpu().numpy().tobytes()))
    inputs.update(yv=yv, sy=sy, seeds=source.seeds, z0=z0, zs=zs)
    return _GRAPHS.run(key, owners, inputs, lambda st: loop(st["z0"], (lambda i: None) if st["zs"] is None
                                                                     else (lambda i: st["zs"][i])), device)
