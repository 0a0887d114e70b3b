"""DDRM sampling (Kawar et al. 2022, Algorithm 1 with eta_A = eta_C = eta) over any operator's SVD: check the call,
build the noise and the step, then run the loop (or replay its CUDA graph)."""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch

from .. import reference
from .._utils import Generator, Model, progress_bar
from ..operators.base import LinearOperator
from ..operators.group import GroupOperator
from .checks import Call, check_call, check_result, model_eps
from .graphs import GRAPHS
from .network import compile_mode, network
from .noise import make_noise
from .source import NoiseRequest, NoiseSource
from .steps import Step, build_step
from .walk import Walk

__all__ = ["ddrm_sample"]


@torch.no_grad()  # sampling never records autograd history, whatever the caller's mode or the model's parameters
def ddrm_sample(model: Model, y: torch.Tensor, operator: LinearOperator, sigma_y, *, steps: int = 20,
                eta: float = 0.85, eta_b: float = 1.0, schedule: Optional[torch.Tensor] = None,
                generator: Generator = None, noise: str = "torch", backend: str = "auto",
                x_T: Optional[torch.Tensor] = None, callback: Optional[Callable[[dict], None]] = None,
                progress: bool = False, model_dtype: Optional[torch.dtype] = None, channels_last: bool = False,
                compile: Union[bool, str] = False, cuda_graph: bool = False, clip_x0: bool = False) -> torch.Tensor:
    """Restore images from y = H x + z with DDRM (Kawar et al. 2022); returns the restored batch (B, C, H, W).

    Runs under ``torch.no_grad()``: no autograd history is recorded, whatever the caller's mode. Arguments it cannot
    honour raise a ValueError naming the argument before any work, on every backend alike; a model whose output is
    NaN or Inf at any step raises a ValueError naming it at the end (the loop itself never waits for the device).

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
        backend: ``"auto"`` (default: the fastest available: cuda, else triton on a GPU; cpu on the CPU),
            ``"reference"`` (plain PyTorch over the SVD, the oracle every backend is tested against), ``"cpu"`` /
            ``"cuda"`` (compiled kernels) or ``"triton"``. Group operators (denoise, inpaint, block SR, colorize)
            take the one-pass grouped step on the fused backends, the others the fused spectral step.
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
        clip_x0: clamp each step's x0 prediction to [-1, 1] and use the eps consistent with it (DDPM's
            ``clip_denoised``; docs/ddrm.md, "Clipping x0"): inside the one-pass group step, in pixel space before
            V^T on the spectral path; every backend equals the reference. Off by default, as in the original.
    """
    call = check_call(model, y, operator, sigma_y, steps=steps, eta=eta, eta_b=eta_b, schedule=schedule,
                      generator=generator, noise=noise, backend=backend, x_T=x_T, callback=callback,
                      progress=progress, cuda_graph=cuda_graph)
    mode = compile_mode(compile, cuda_graph)
    net = network(model, model_dtype, channels_last, mode, call.device)
    walk = Walk.of(call.betas.float(), call.seq, call.device)
    # group operators consume image-layout noise (the one-pass step adds it pixel by pixel; the reference maps it
    # with V^T), the others spectral (B, N) noise
    layout = (call.batch, *operator.image_shape) if isinstance(operator, GroupOperator) else (call.batch, operator.n)
    source = make_noise(noise, NoiseRequest(operator, layout, generator, call.device, call.sigma_y, walk.coef[:, 2]))
    uty, sy, seeds, z0 = operator.Ut(call.y).contiguous(), call.sigma_y, source.seeds, source.initial(call.x_T)
    if cuda_graph:  # a graph reads its inputs from fixed buffers: owned copies, never the caller's tensors
        uty, sy = uty.clone(), sy.clone()
        seeds, z0 = (None if seeds is None else seeds.clone()), (None if z0 is None else z0.clone())
    step = build_step(call.backend, operator, uty, sy, seeds, walk.init_coef, owned=cuda_graph, clip_x0=clip_x0)

    def loop(z_init: Optional[torch.Tensor], noise_at: Callable[[int], Optional[torch.Tensor]]) -> torch.Tensor:
        return _loop(net, step, walk, call, operator.image_shape[0], z_init, noise_at, callback, progress, clip_x0)

    if not cuda_graph:
        return check_result(loop(z0, source.step))
    key = (id(model), step.graph_key, tuple(call.y.shape), tuple(sy.shape), tuple(call.seq), call.eta, call.eta_b,
           noise, call.backend.name, model_dtype, channels_last, mode, str(call.device),
           hash(call.betas.double().cpu().numpy().tobytes()), bool(clip_x0))
    return check_result(_replay(key, (model,) + step.owners, step, source, dict(uty=uty, sy=sy, seeds=seeds, z0=z0),
                                loop, call.device, len(walk.rev)))


def _loop(net: Model, step: Step, walk: Walk, call: Call, channels: int, z_init, noise_at, callback,
          progress: bool, clip_x0: bool) -> torch.Tensor:
    """The sampling loop: model, then one fused step, no host syncs. Only x_t lives across the model call; x_t, eps
    and x_{t'} (and drawn noise) across the step."""
    x = step.initial(z_init)
    for i in progress_bar(range(len(walk.rev)), progress, "ddrm"):
        eps = model_eps(net(x, walk.ts[i].expand(call.batch)), x, channels)
        x_next = step.advance(x, eps, noise_at(i), walk.coef[i], call.eta, call.eta_b, i)
        if callback is not None:
            callback({"i": i, "t": walk.rev[i], "t_next": walk.rev_next[i], "x": x_next,
                      "x0": reference.clipped_prediction(x, eps, walk.coef[i], clip_x0)[0]})
        x = x_next
        del eps, x_next
    return x


def _replay(key: tuple, owners: tuple, step: Step, source: NoiseSource, inputs: dict, loop, device,
            steps: int) -> torch.Tensor:
    """The loop as a CUDA graph, captured on the first call with ``key`` and replayed after copying this call's
    inputs in. Every step's noise is drawn before the replay, into buffers the graph reads (in-kernel Philox needs
    none); on the fused group step the operator's weights and mask are inputs too, so per-batch masks replay one
    graph."""
    drawn = [source.step(i) for i in range(steps)]
    zs = None if drawn[0] is None else torch.stack(drawn)
    inputs = dict(inputs, zs=zs, **step.graph_inputs)
    return GRAPHS.run(key, owners, inputs, lambda st: loop(st["z0"], (lambda i: None) if st["zs"] is None
                                                            else (lambda i: st["zs"][i])), device)
