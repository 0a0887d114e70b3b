"""The DDPM "simple" UNet (Ho et al. 2020, as ported in the DDIM and SDEdit code), with its checkpoints' layout.

Module names and shapes equal ``models/diffusion.py:Model`` of the DDIM code (``temb.dense.*``, ``conv_in``,
``down.i.block.j``, ``down.i.attn.j``, ``down.i.downsample``, ``mid.*``, ``up.i.*``, ``norm_out``, ``conv_out``), the
architecture of the CelebA-HQ and LSUN checkpoints DDRM uses. Attention runs through
``F.scaled_dot_product_attention``; the network accepts any H, W divisible by ``2 ** (len(ch_mult) - 1)``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ._config import resolve_config
from .adm import half_group_norm, half_norm_applies

__all__ = ["DDPMConfig", "DDPMUNet", "DDPM_PRESETS", "ddpm_timestep_embedding"]


@dataclass
class DDPMConfig:
    """Hyper-parameters of :class:`DDPMUNet`, named as the DDIM code's ``config.model``.

    ``attn_resolutions`` are feature-map sides at the training ``resolution`` (the DDIM config's convention); the
    network itself attends at the matching levels for any input size.
    """

    ch: int = 128
    out_ch: int = 3
    ch_mult: Tuple[int, ...] = (1, 1, 2, 2, 4, 4)
    num_res_blocks: int = 2
    attn_resolutions: Tuple[int, ...] = (16,)
    dropout: float = 0.0
    in_channels: int = 3
    resolution: int = 256
    resamp_with_conv: bool = True

    def __post_init__(self):
        self.ch_mult = tuple(int(m) for m in self.ch_mult)
        self.attn_resolutions = tuple(int(r) for r in self.attn_resolutions)
        if self.ch < 1 or self.ch % 32:
            raise ValueError(f"ch must be a positive multiple of 32 (GroupNorm(32)), got {self.ch}")
        if self.num_res_blocks < 1:
            raise ValueError(f"num_res_blocks must be >= 1, got {self.num_res_blocks}")
        if not self.ch_mult or min(self.ch_mult) < 1:
            raise ValueError(f"ch_mult must be non-empty positive ints, got {self.ch_mult}")

    def attn_levels(self) -> Tuple[int, ...]:
        return tuple(i for i in range(len(self.ch_mult)) if self.resolution // 2**i in self.attn_resolutions)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ch_mult"], d["attn_resolutions"] = list(self.ch_mult), list(self.attn_resolutions)
        return d


DDPM_PRESETS = {
    # celeba_hq.ckpt (SDEdit) and the LSUN bedroom/cat/church checkpoints: DDRM's configs/celeba_hq.yml, bedroom.yml
    "celeba_hq": DDPMConfig(),
    "lsun256": DDPMConfig(),
}


def ddpm_timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """The DDPM/DDIM sinusoidal embedding (sin first, frequencies over half - 1) of timesteps t (B,), float32."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=t.device) * -(math.log(10000) / (half - 1)))
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class _Norm(nn.GroupNorm):
    """The DDIM code's GroupNorm(32, eps 1e-6); half-precision CPU activations take the mixed-dtype kernel (the
    float32 statistics, without upcasting the tensor)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return half_group_norm(x, self) if half_norm_applies(x) else super().forward(x)


def _norm(channels: int) -> nn.GroupNorm:
    return _Norm(32, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = _norm(in_channels), nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.temb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2, self.dropout = _norm(out_channels), nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention with 1x1 conv q, k, v, proj_out."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        h = self.norm(x)
        q, k, v = (m(h).reshape(b, 1, c, hh * ww).transpose(-1, -2) for m in (self.q, self.k, self.v))
        a = F.scaled_dot_product_attention(q, k, v)  # scale c^-1/2, as the original
        return x + self.proj_out(a.transpose(-1, -2).reshape(b, c, hh, ww))


class _Down(nn.Module):
    def __init__(self, channels: int, with_conv: bool):
        super().__init__()
        if with_conv:
            self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)
        self.with_conv = with_conv

    def forward(self, x):
        # the original pads right/bottom only, then convolves without padding
        return self.conv(F.pad(x, (0, 1, 0, 1))) if self.with_conv else F.avg_pool2d(x, 2)


class _Up(nn.Module):
    def __init__(self, channels: int, with_conv: bool):
        super().__init__()
        if with_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.with_conv = with_conv

    def forward(self, x):
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x) if self.with_conv else x


class DDPMUNet(nn.Module):
    """The DDIM code's ``Model``: ``model(x_t, t) -> eps``.

    Args:
        config: a :class:`DDPMConfig`, a dict of its fields, or a preset name of :data:`DDPM_PRESETS`
            (``"celeba_hq"``, ``"lsun256"``); keyword arguments override its fields.
    """

    def __init__(self, config="celeba_hq", **overrides):
        super().__init__()
        cfg = resolve_config(DDPMConfig, DDPM_PRESETS, config, overrides)
        self.config = cfg
        ch, temb_ch, levels = cfg.ch, 4 * cfg.ch, len(cfg.ch_mult)
        attn_levels = cfg.attn_levels()

        self.temb = nn.Module()
        self.temb.dense = nn.ModuleList([nn.Linear(ch, temb_ch), nn.Linear(temb_ch, temb_ch)])
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)

        in_mult = (1,) + cfg.ch_mult
        self.down = nn.ModuleList()
        for i in range(levels):
            block_in, block_out = ch * in_mult[i], ch * cfg.ch_mult[i]
            down = nn.Module()
            down.block, down.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(cfg.num_res_blocks):
                down.block.append(ResnetBlock(block_in, block_out, temb_ch, cfg.dropout))
                block_in = block_out
                if i in attn_levels:
                    down.attn.append(AttnBlock(block_in))
            if i != levels - 1:
                down.downsample = _Down(block_in, cfg.resamp_with_conv)
            self.down.append(down)

        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, temb_ch, cfg.dropout)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in, temb_ch, cfg.dropout)

        ups = []
        for i in reversed(range(levels)):
            block_out, skip_in = ch * cfg.ch_mult[i], ch * cfg.ch_mult[i]
            up = nn.Module()
            up.block, up.attn = nn.ModuleList(), nn.ModuleList()
            for j in range(cfg.num_res_blocks + 1):
                if j == cfg.num_res_blocks:
                    skip_in = ch * in_mult[i]
                up.block.append(ResnetBlock(block_in + skip_in, block_out, temb_ch, cfg.dropout))
                block_in = block_out
                if i in attn_levels:
                    up.attn.append(AttnBlock(block_in))
            if i != 0:
                up.upsample = _Up(block_in, cfg.resamp_with_conv)
            ups.insert(0, up)
        self.up = nn.ModuleList(ups)

        self.norm_out = _norm(block_in)
        self.conv_out = nn.Conv2d(block_in, cfg.out_ch, 3, padding=1)
        self.divisor = 2 ** (levels - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if x.dim() != 4 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"x must be (B, {cfg.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[-2] % self.divisor or x.shape[-1] % self.divisor:
            raise ValueError(f"x: H and W must be multiples of {self.divisor} for this UNet, got {tuple(x.shape[-2:])}")
        t = torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0])
        temb = self.temb.dense[1](F.silu(self.temb.dense[0](ddpm_timestep_embedding(t, cfg.ch))))
        hs = [self.conv_in(x)]
        for i, down in enumerate(self.down):
            for j, block in enumerate(down.block):
                h = block(hs[-1], temb)
                hs.append(down.attn[j](h) if len(down.attn) else h)
            if hasattr(down, "downsample"):
                hs.append(down.downsample(hs[-1]))
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(hs[-1], temb)), temb)
        for up in reversed(self.up):
            for j, block in enumerate(up.block):
                h = block(torch.cat([h, hs.pop()], dim=1), temb)
                if len(up.attn):
                    h = up.attn[j](h)
            if hasattr(up, "upsample"):
                h = up.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))
