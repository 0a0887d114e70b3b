"""The ADM UNet of guided-diffusion (Dhariwal & Nichol 2021), with its public checkpoints' state_dict layout.

Module names and parameter shapes equal guided-diffusion's ``UNetModel`` (``time_embed.*``, ``label_emb``,
``input_blocks.i.j``, ``middle_block``, ``output_blocks``, ``out``), so its checkpoints load with ``strict=True``.
The math is the same too, with two modern paths: attention runs through ``F.scaled_dot_product_attention`` (same
result as the legacy einsum attention), and ``to_dtype(torch.float16 | torch.bfloat16)`` converts the torso as
guided-diffusion's ``use_fp16`` does (convolutions in half precision, group norms and the time embedding in float32).
The network is fully convolutional apart from attention, which is global and size-agnostic: any H, W divisible by
``2 ** (len(channel_mult) - 1)`` runs.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ._config import resolve_config

__all__ = ["ADMConfig", "ADMUNet", "ADM_PRESETS", "ClassConditional", "timestep_embedding", "half_group_norm",
           "half_norm_applies"]


@dataclass
class ADMConfig:
    """Hyper-parameters of :class:`ADMUNet`, named as guided-diffusion's ``UNetModel`` arguments.

    ``attention_ds`` holds downsampling factors (guided-diffusion's ``attention_resolutions`` after its
    ``image_size // res`` conversion): attention at 32, 16, 8 pixels of a 256 image is ``(8, 16, 32)``.
    """

    in_channels: int = 3
    model_channels: int = 128
    out_channels: int = 3
    num_res_blocks: int = 2
    attention_ds: Tuple[int, ...] = (16,)
    channel_mult: Tuple[float, ...] = (1, 2, 2, 2)
    dropout: float = 0.0
    conv_resample: bool = True
    num_classes: Optional[int] = None
    num_heads: int = 1
    num_head_channels: int = -1
    num_heads_upsample: int = -1
    use_scale_shift_norm: bool = False
    resblock_updown: bool = False
    use_new_attention_order: bool = False

    def __post_init__(self):
        self.attention_ds = tuple(int(d) for d in self.attention_ds)
        # a fraction is guided-diffusion's too: the 512x512 models start at half the width (0.5, 1, 1, 2, 2, 4, 4)
        self.channel_mult = tuple(int(m) if float(m).is_integer() else float(m) for m in self.channel_mult)
        if self.model_channels < 1 or self.model_channels % 32:
            raise ValueError(f"model_channels must be a positive multiple of 32 (GroupNorm(32)), "
                             f"got {self.model_channels}")
        if self.num_res_blocks < 1:
            raise ValueError(f"num_res_blocks must be >= 1, got {self.num_res_blocks}")
        if not self.channel_mult or min(self.channel_mult) <= 0:
            raise ValueError(f"channel_mult must be non-empty positive numbers, got {self.channel_mult}")
        if self.num_head_channels == -1 and self.num_heads < 1:
            raise ValueError("give num_heads >= 1 or num_head_channels > 0")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["attention_ds"], d["channel_mult"] = list(self.attention_ds), list(self.channel_mult)
        return d


def _preset(image_size: int, attention_resolutions: Sequence[int], **kw) -> ADMConfig:
    return ADMConfig(attention_ds=tuple(image_size // r for r in attention_resolutions), **kw)


# The public checkpoints DDRM users have (guided-diffusion's README flags, learn_sigma: 6 output channels).
ADM_PRESETS: Dict[str, ADMConfig] = {
    # 256x256_diffusion_uncond.pt
    "imagenet256": _preset(256, (32, 16, 8), model_channels=256, out_channels=6, num_res_blocks=2,
                           channel_mult=(1, 1, 2, 2, 4, 4), num_head_channels=64, use_scale_shift_norm=True,
                           resblock_updown=True),
    # 256x256_diffusion.pt (class-conditional)
    "imagenet256_cond": _preset(256, (32, 16, 8), model_channels=256, out_channels=6, num_res_blocks=2,
                                channel_mult=(1, 1, 2, 2, 4, 4), num_head_channels=64, use_scale_shift_norm=True,
                                resblock_updown=True, num_classes=1000),
    # ffhq_10m.pt (the FFHQ 256 model of DPS / P2 weighting)
    "ffhq256": _preset(256, (16,), model_channels=128, out_channels=6, num_res_blocks=1,
                       channel_mult=(1, 1, 2, 2, 4, 4), num_heads=4, num_head_channels=64,
                       use_scale_shift_norm=True, resblock_updown=True),
}


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """guided-diffusion's sinusoidal embedding (cos first) of float timesteps t (B,), in float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm(32) computed in float32 whatever the activations' dtype (guided-diffusion's normalization)."""

    def __init__(self, channels: int):
        super().__init__(32, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if half_norm_applies(x):
            return half_group_norm(x, self)
        return F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps).to(x.dtype)


def half_norm_applies(x: torch.Tensor) -> bool:
    """Whether :func:`half_group_norm` serves ``x``: half-precision activations on the CPU."""
    return x.dtype in (torch.bfloat16, torch.float16) and x.device.type == "cpu"


def half_group_norm(x: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """Group norm of half-precision CPU activations by torch's mixed-dtype kernel: statistics accumulated in float32
    (the float32 path's numbers, rounded once to the activations' dtype), without the two casts of the whole tensor
    that upcasting costs (7x faster on a 64-channel 256x256 image; autocast would upcast it, so it is off here)."""
    with torch.autocast("cpu", enabled=False):
        return F.group_norm(x, norm.num_groups, norm.weight.float(), norm.bias.float(), norm.eps)


class Downsample(nn.Module):
    """Halve H, W: a stride-2 3x3 conv (key ``op``) or 2x2 average pooling."""

    def __init__(self, channels: int, use_conv: bool, out_channels: Optional[int] = None):
        super().__init__()
        out_channels = out_channels or channels
        if use_conv:
            self.op = nn.Conv2d(channels, out_channels, 3, stride=2, padding=1)
        elif out_channels != channels:
            raise ValueError("Downsample without a conv cannot change the channel count")
        self.use_conv = use_conv

    def forward(self, x):
        return self.op(x) if self.use_conv else F.avg_pool2d(x, 2)


class Upsample(nn.Module):
    """Double H, W by nearest neighbour, then optionally a 3x3 conv (key ``conv``)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: Optional[int] = None):
        super().__init__()
        out_channels = out_channels or channels
        if use_conv:
            self.conv = nn.Conv2d(channels, out_channels, 3, padding=1)
        elif out_channels != channels:
            raise ValueError("Upsample without a conv cannot change the channel count")
        self.use_conv = use_conv

    def forward(self, x):
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class ResBlock(nn.Module):
    """guided-diffusion's ResBlock: norm-SiLU-conv, timestep injection (add or scale-shift), norm-SiLU-drop-conv."""

    def __init__(self, channels: int, emb_channels: int, dropout: float, out_channels: Optional[int] = None,
                 use_scale_shift_norm: bool = False, up: bool = False, down: bool = False):
        super().__init__()
        out_channels = out_channels or channels
        self.in_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels,
                                                             2 * out_channels if use_scale_shift_norm else out_channels))
        self.out_layers = nn.Sequential(GroupNorm32(out_channels), nn.SiLU(), nn.Dropout(dropout),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.use_scale_shift_norm = use_scale_shift_norm
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            h = self.in_layers[:-1](x)
            h = self.in_layers[-1](self.h_upd(h))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).to(h.dtype)[..., None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all positions, with guided-diffusion's 1-D conv qkv/proj_out parameters.

    ``legacy_order``: the qkv channels are laid out per head as [q_h, k_h, v_h] (QKVAttentionLegacy, the public
    checkpoints); otherwise as [q, k, v], each split into heads (QKVAttention).
    """

    def __init__(self, channels: int, num_heads: int = 1, num_head_channels: int = -1, legacy_order: bool = True):
        super().__init__()
        if num_head_channels != -1:
            if channels % num_head_channels:
                raise ValueError(f"channels {channels} not divisible by num_head_channels {num_head_channels}")
            num_heads = channels // num_head_channels
        if channels % num_heads:
            raise ValueError(f"channels {channels} not divisible by num_heads {num_heads}")
        self.num_heads, self.legacy_order = num_heads, legacy_order
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))  # (B, 3C, T)
        heads, ch, length = self.num_heads, c // self.num_heads, x.shape[-1]
        if self.legacy_order:
            q, k, v = qkv.reshape(b, heads, 3 * ch, length).split(ch, dim=2)
        else:
            q, k, v = (t.reshape(b, heads, ch, length) for t in qkv.chunk(3, dim=1))
        # SDPA wants (B, heads, T, ch); its default scale 1/sqrt(ch) equals the original's (q ch^-1/4)(k ch^-1/4)
        q, k, v = q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2)
        if half_norm_applies(q):  # half precision on the CPU: contiguous inputs take the fused (flash) kernel, 2.7x
            q, k, v = q.contiguous(), k.contiguous(), v.contiguous()  # faster than the views' path (float32 keeps it)
        a = F.scaled_dot_product_attention(q, k, v)
        h = self.proj_out(a.transpose(-1, -2).reshape(b, c, length))
        return (x + h).reshape(b, c, *spatial)


class TimestepEmbedSequential(nn.Sequential):
    """A Sequential that passes the timestep embedding to the ResBlocks in it."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class ADMUNet(nn.Module):
    """guided-diffusion's ``UNetModel``: ``model(x_t, t, y=None)`` returns eps (and the variance channels when
    ``out_channels == 2 * in_channels``).

    Args:
        config: an :class:`ADMConfig`, a dict of its fields, or the name of a preset in :data:`ADM_PRESETS`
            (``"imagenet256"``, ``"imagenet256_cond"``, ``"ffhq256"``); keyword arguments override its fields.
    """

    def __init__(self, config="imagenet256", **overrides):
        super().__init__()
        cfg = resolve_config(ADMConfig, ADM_PRESETS, config, overrides)
        self.config = cfg
        self.dtype = torch.float32  # of the torso (input, middle and output blocks)
        mc, emb_dim = cfg.model_channels, 4 * cfg.model_channels
        heads_up = cfg.num_heads if cfg.num_heads_upsample == -1 else cfg.num_heads_upsample

        def attention(ch, heads):
            return AttentionBlock(ch, heads, cfg.num_head_channels, legacy_order=not cfg.use_new_attention_order)

        def res(ch, out, **kw):
            return ResBlock(ch, emb_dim, cfg.dropout, out, cfg.use_scale_shift_norm, **kw)

        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if cfg.num_classes is not None:
            self.label_emb = nn.Embedding(cfg.num_classes, emb_dim)

        ch = int(cfg.channel_mult[0] * mc)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(cfg.in_channels, ch, 3, padding=1))])
        skip_chans, ds = [ch], 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers = [res(ch, int(mult * mc))]
                ch = int(mult * mc)
                if ds in cfg.attention_ds:
                    layers.append(attention(ch, cfg.num_heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_chans.append(ch)
            if level != len(cfg.channel_mult) - 1:
                down = res(ch, ch, down=True) if cfg.resblock_updown else Downsample(ch, cfg.conv_resample)
                self.input_blocks.append(TimestepEmbedSequential(down))
                skip_chans.append(ch)
                ds *= 2

        self.middle_block = TimestepEmbedSequential(res(ch, ch), attention(ch, cfg.num_heads), res(ch, ch))

        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(cfg.channel_mult))[::-1]:
            for i in range(cfg.num_res_blocks + 1):
                layers = [res(ch + skip_chans.pop(), int(mc * mult))]
                ch = int(mc * mult)
                if ds in cfg.attention_ds:
                    layers.append(attention(ch, heads_up))
                if level and i == cfg.num_res_blocks:
                    layers.append(res(ch, ch, up=True) if cfg.resblock_updown else Upsample(ch, cfg.conv_resample))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), nn.Conv2d(ch, cfg.out_channels, 3, padding=1))
        # guided-diffusion starts every residual branch and the output at zero (zero_module): matters for training
        for m in self.modules():
            if isinstance(m, ResBlock):
                nn.init.zeros_(m.out_layers[-1].weight), nn.init.zeros_(m.out_layers[-1].bias)
            elif isinstance(m, AttentionBlock):
                nn.init.zeros_(m.proj_out.weight), nn.init.zeros_(m.proj_out.bias)
        nn.init.zeros_(self.out[-1].weight), nn.init.zeros_(self.out[-1].bias)
        self.divisor = 2 ** (len(cfg.channel_mult) - 1)

    def to_dtype(self, dtype: torch.dtype) -> "ADMUNet":
        """Run the torso in ``dtype`` (float16/bfloat16/float32): its convolutions' weights are cast, group norms
        and the time embedding stay float32 (guided-diffusion's ``convert_to_fp16``). Returns self."""
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype}")
        for part in (self.input_blocks, self.middle_block, self.output_blocks):
            for m in part.modules():
                if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                    m.to(dtype)
        self.dtype = dtype
        return self

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"x must be (B, {self.config.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[-2] % self.divisor or x.shape[-1] % self.divisor:
            raise ValueError(f"x: H and W must be multiples of {self.divisor} for this UNet, got {tuple(x.shape[-2:])}")
        if (y is None) != (self.config.num_classes is None):
            raise ValueError("y (class labels) must be given exactly when the model is class-conditional "
                             f"(num_classes={self.config.num_classes})")
        t = torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0])
        emb = self.time_embed(timestep_embedding(t, self.config.model_channels))
        if y is not None:
            emb = emb + self.label_emb(y.reshape(x.shape[0]))
        hs, h = [], x.to(self.dtype)
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h.to(x.dtype))


class ClassConditional(nn.Module):
    """A class-conditional ADM as ``model(x_t, t) -> eps`` for one class label, for the samplers."""

    def __init__(self, model: ADMUNet, label: int):
        super().__init__()
        classes = model.config.num_classes
        if classes is None:
            raise ValueError("the model is not class-conditional")
        if not 0 <= int(label) < classes:
            raise ValueError(f"class label must lie in 0..{classes - 1}, got {label}")
        self.model, self.label, self.divisor = model, int(label), model.divisor

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.model(x, t, torch.full((x.shape[0],), self.label, device=x.device, dtype=torch.long))
