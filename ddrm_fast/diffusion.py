"""DDPM (Ho et al. 2020) and DDIM (Song et al. 2021): forward process, posterior, samplers and training loss.

``model(x_t, t) -> eps`` everywhere; a model that returns 2C channels (learned variance) is cut to its first C.
Coefficients are kept in float64 and cast to the data's dtype when used.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch

from ._utils import Generator, Model, progress_bar, randn
from .schedules import abar_table, ddrm_timesteps

__all__ = ["GaussianDiffusion", "take_eps"]


def take_eps(out: torch.Tensor, channels: int) -> torch.Tensor:
    """The eps part of a model output: its first ``channels`` channels when it returns 2C (learned sigma)."""
    if out.dim() < 2:
        raise ValueError(f"model output must be (B, C, ...), got shape {tuple(out.shape)}")
    if out.shape[1] == channels:
        return out
    if out.shape[1] == 2 * channels:
        return out[:, :channels]
    raise ValueError(f"model returned {out.shape[1]} channels; expected {channels} (eps) or {2 * channels} (eps, var)")


class GaussianDiffusion:
    """A discrete-time Gaussian diffusion with ``betas`` (T,), as in DDPM.

    q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I); the reverse step uses the posterior q(x_{t-1} | x_t, x_0)
    with x_0 predicted from eps, and variance ``c3`` (the posterior variance, DDPM's "fixed small").
    """

    def __init__(self, betas: torch.Tensor):
        betas = torch.as_tensor(betas)
        if betas.dim() != 1 or betas.numel() == 0:
            raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {tuple(betas.shape)}")
        betas = betas.to(torch.float64)
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("betas must lie in (0, 1)")
        self.betas = betas
        self.num_timesteps = betas.numel()
        # table[t + 1] = abar(t), table[0] = abar(-1) = 1
        self._abar = abar_table(betas)

    # --- schedule look-ups -------------------------------------------------------------------------------------
    def abar(self, t: Union[int, torch.Tensor]) -> torch.Tensor:
        """abar(t) for t in -1..T-1 (float64), elementwise for a tensor t."""
        t = torch.as_tensor(t, dtype=torch.long)
        if bool(((t < -1) | (t >= self.num_timesteps)).any()):
            raise ValueError(f"t must lie in -1..{self.num_timesteps - 1}")
        return self._abar[t + 1]

    def _coef(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Per-sample coefficients shaped to broadcast over ``like`` (B, ...)."""
        v = values.to(like.device)[t.to(like.device).long()] if t.dim() else values[int(t)].to(like.device)
        return v.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))

    def _t(self, t: Union[int, torch.Tensor], batch: int) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.long)
        if t.dim() == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"t must be an int or a (B,) tensor with B={batch}, got shape {tuple(t.shape)}")
        if bool(((t < 0) | (t >= self.num_timesteps)).any()):
            raise ValueError(f"t must lie in 0..{self.num_timesteps - 1}")
        return t

    # --- forward process ---------------------------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t, noise: Optional[torch.Tensor] = None,
                 generator: Generator = None) -> torch.Tensor:
        """Draw x_t ~ q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)."""
        t = self._t(t, x0.shape[0])
        if noise is None:
            noise = randn(x0.shape, generator, like=x0)
        elif noise.shape != x0.shape:
            raise ValueError(f"noise must have the shape of x0 {tuple(x0.shape)}, got {tuple(noise.shape)}")
        a = self._abar[1:]
        return self._coef(a.sqrt(), t, x0) * x0 + self._coef((1 - a).sqrt(), t, x0) * noise

    def predict_x0_from_eps(self, x_t: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
        """x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
        t = self._t(t, x_t.shape[0])
        a = self._abar[1:]
        return (x_t - self._coef((1 - a).sqrt(), t, x_t) * eps) / self._coef(a.sqrt(), t, x_t)

    def posterior_coefficients(self, t) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c1, c2, c3) of q(x_{t-1} | x_t, x_0) = N(c1 x_0 + c2 x_t, c3 I), float64, elementwise in t."""
        t = torch.as_tensor(t, dtype=torch.long)
        beta = self.betas[t]
        a, a_prev = self._abar[t + 1], self._abar[t]
        c1 = beta * a_prev.sqrt() / (1 - a)
        c2 = (1 - a_prev) * (1 - beta).sqrt() / (1 - a)
        c3 = (1 - a_prev) * beta / (1 - a)
        return c1, c2, c3

    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance (broadcastable) of q(x_{t-1} | x_t, x_0)."""
        t = self._t(t, x_t.shape[0])
        c1, c2, c3 = self.posterior_coefficients(t)
        shape = (-1,) + (1,) * (x_t.dim() - 1)
        c1, c2, c3 = (c.to(x_t.device, x_t.dtype).reshape(shape) for c in (c1, c2, c3))
        return c1 * x0 + c2 * x_t, c3

    # --- reverse process ---------------------------------------------------------------------------------------
    def _eps(self, model: Model, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return take_eps(model(x_t, t.to(x_t.device)), x_t.shape[1])

    def p_sample(self, model: Model, x_t: torch.Tensor, t, generator: Generator = None,
                 clip_denoised: bool = False) -> torch.Tensor:
        """One ancestral step x_t -> x_{t-1}: posterior mean from the predicted x_0, plus sqrt(c3) z (none at t=0)."""
        t = self._t(t, x_t.shape[0])
        x0 = self.predict_x0_from_eps(x_t, t, self._eps(model, x_t, t))
        if clip_denoised:
            x0 = x0.clamp(-1, 1)
        mean, var = self.q_posterior(x0, x_t, t)
        nonzero = (t > 0).to(x_t.device, x_t.dtype).reshape(-1, *([1] * (x_t.dim() - 1)))
        return mean + nonzero * var.sqrt() * randn(x_t.shape, generator, like=x_t)

    def p_sample_loop(self, model: Model, shape: Sequence[int], generator: Generator = None,
                      x_T: Optional[torch.Tensor] = None, device=None, dtype=torch.float32,
                      clip_denoised: bool = False, progress: bool = False) -> torch.Tensor:
        """DDPM ancestral sampling over all T steps, from x_T ~ N(0, I) (or the given ``x_T``)."""
        x = randn(tuple(shape), generator, device=device, dtype=dtype) if x_T is None else x_T
        for t in progress_bar(range(self.num_timesteps - 1, -1, -1), progress, "ddpm"):
            x = self.p_sample(model, x, t, generator, clip_denoised)
        return x

    def ddim_step(self, model: Model, x_t: torch.Tensor, t: int, t_next: int, eta: float = 0.0,
                  generator: Generator = None) -> torch.Tensor:
        """DDIM x_t -> x_{t'} (t' may skip steps; t' = -1 ends at abar = 1)."""
        tt = self._t(t, x_t.shape[0])
        eps = self._eps(model, x_t, tt)
        x0 = self.predict_x0_from_eps(x_t, tt, eps)
        a, a_next = float(self.abar(t)), float(self.abar(t_next))
        s = eta * ((1 - a_next) / (1 - a)) ** 0.5 * (1 - a / a_next) ** 0.5
        out = a_next ** 0.5 * x0 + max(1 - a_next - s * s, 0.0) ** 0.5 * eps
        if s > 0:
            out = out + s * randn(x_t.shape, generator, like=x_t)
        return out

    def ddim_sample_loop(self, model: Model, shape: Sequence[int], steps: int = 50, eta: float = 0.0,
                         generator: Generator = None, x_T: Optional[torch.Tensor] = None, device=None,
                         dtype=torch.float32, progress: bool = False) -> torch.Tensor:
        """DDIM sampling over ``range(0, T, T // steps)`` (eta=0: deterministic given x_T; eta=1: DDPM-like)."""
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        seq = ddrm_timesteps(steps, self.num_timesteps)
        x = randn(tuple(shape), generator, device=device, dtype=dtype) if x_T is None else x_T
        nxt = [-1] + seq[:-1]
        for t, t_next in progress_bar(list(zip(reversed(seq), reversed(nxt))), progress, "ddim"):
            x = self.ddim_step(model, x, t, t_next, eta, generator)
        return x

    def sample(self, model: Model, shape: Sequence[int], method: str = "ddpm", steps: Optional[int] = None,
               eta: float = 0.0, **kwargs) -> torch.Tensor:
        """Unconditional sampling: ``method="ddpm"`` (all T steps) or ``"ddim"`` (``steps``, ``eta``)."""
        if method == "ddpm":
            return self.p_sample_loop(model, shape, **kwargs)
        if method == "ddim":
            return self.ddim_sample_loop(model, shape, steps=steps or 50, eta=eta, **kwargs)
        raise ValueError(f"method must be 'ddpm' or 'ddim', got {method!r}")

    # --- training ----------------------------------------------------------------------------------------------
    def loss(self, model: Model, x0: torch.Tensor, t: Optional[torch.Tensor] = None,
             noise: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """DDPM's simple loss: mean || eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t) ||^2.

        t is drawn uniformly from 0..T-1 per sample unless given.
        """
        if t is None:
            t = torch.randint(0, self.num_timesteps, (x0.shape[0],), generator=generator).to(x0.device)
        if noise is None:
            noise = randn(x0.shape, generator, like=x0)
        x_t = self.q_sample(x0, t, noise)
        return torch.mean((noise - self._eps(model, x_t, self._t(t, x0.shape[0]))) ** 2)
