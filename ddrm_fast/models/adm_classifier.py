"""guided-diffusion's noisy-image classifier (``EncoderUNetModel``, the ``*_classifier.pt`` checkpoints of classifier
guidance): the ADM encoder (input blocks and middle block of :class:`~ddrm_fast.models.adm.ADMUNet`) and a pooling
head, with the checkpoints' state_dict layout, so they load with ``strict=True``. It is built in guided-diffusion's
order with its layers' own initialisations, so building one draws from torch's generator exactly what the original's
does (the original runner builds it before it draws its degradation and noise)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ._config import resolve_config
from .adm import AttentionBlock, Downsample, GroupNorm32, ResBlock, TimestepEmbedSequential, timestep_embedding

__all__ = ["ClassifierConfig", "ADMClassifier", "AttentionPool2d"]

POOLS = ("adaptive", "attention")


@dataclass
class ClassifierConfig:
    """Hyper-parameters of :class:`ADMClassifier`, named as ``EncoderUNetModel``'s arguments (``attention_ds``: the
    downsampling factors with attention, as in :class:`~ddrm_fast.models.adm.ADMConfig`)."""

    image_size: int = 64
    in_channels: int = 3
    model_channels: int = 128
    out_channels: int = 1000
    num_res_blocks: int = 2
    attention_ds: Tuple[int, ...] = ()
    channel_mult: Tuple[float, ...] = (1, 2, 3, 4)
    dropout: float = 0.0
    conv_resample: bool = True
    num_heads: int = 1
    num_head_channels: int = -1
    use_scale_shift_norm: bool = False
    resblock_updown: bool = False
    use_new_attention_order: bool = False
    pool: str = "attention"

    def __post_init__(self):
        self.attention_ds = tuple(int(d) for d in self.attention_ds)
        self.channel_mult = tuple(self.channel_mult)
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {self.pool!r}")
        if self.pool == "attention" and self.num_head_channels == -1:
            raise ValueError("the attention pool needs num_head_channels")

    def to_dict(self) -> dict:
        return asdict(self)


class AttentionPool2d(nn.Module):
    """CLIP's attention pooling as guided-diffusion has it: the mean position and every position attend, with a
    learned positional embedding, through QKVAttention (q, k, v each split into heads); returns the mean's output."""

    def __init__(self, spatial: int, channels: int, head_channels: int, out_channels: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(channels, spatial**2 + 1) / channels**0.5)
        self.qkv_proj = nn.Conv1d(channels, 3 * channels, 1)
        self.c_proj = nn.Conv1d(channels, out_channels, 1)
        self.num_heads = channels // head_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        x = x.reshape(b, c, -1)
        x = torch.cat([x.mean(dim=-1, keepdim=True), x], dim=-1) + self.positional_embedding[None].to(x.dtype)
        heads, ch, length = self.num_heads, c // self.num_heads, x.shape[-1]
        q, k, v = (t.reshape(b, heads, ch, length).transpose(-1, -2) for t in self.qkv_proj(x).chunk(3, dim=1))
        a = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(ch), the original's (q ch^-1/4)(k ch^-1/4)
        return self.c_proj(a.transpose(-1, -2).reshape(b, c, length))[:, :, 0]


class ADMClassifier(nn.Module):
    """guided-diffusion's ``EncoderUNetModel``: ``classifier(x_t, t)`` returns class logits (B, out_channels).

    Args:
        config: a :class:`ClassifierConfig` or a dict of its fields; keyword arguments override them.
    """

    def __init__(self, config=None, **overrides):
        super().__init__()
        cfg = resolve_config(ClassifierConfig, {}, config if config is not None else ClassifierConfig(), overrides)
        self.config = cfg
        mc, emb_dim = cfg.model_channels, 4 * cfg.model_channels

        def res(ch, out, **kw):
            return ResBlock(ch, emb_dim, cfg.dropout, out, cfg.use_scale_shift_norm, **kw)

        def attention(ch):
            return AttentionBlock(ch, cfg.num_heads, cfg.num_head_channels,
                                  legacy_order=not cfg.use_new_attention_order)

        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        ch = int(cfg.channel_mult[0] * mc)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(cfg.in_channels, ch, 3, padding=1))])
        ds = 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers = [res(ch, int(mult * mc))]
                ch = int(mult * mc)
                if ds in cfg.attention_ds:
                    layers.append(attention(ch))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
            if level != len(cfg.channel_mult) - 1:
                down = res(ch, ch, down=True) if cfg.resblock_updown else Downsample(ch, cfg.conv_resample)
                self.input_blocks.append(TimestepEmbedSequential(down))
                ds *= 2
        self.middle_block = TimestepEmbedSequential(res(ch, ch), attention(ch), res(ch, ch))
        if cfg.pool == "attention":
            head = AttentionPool2d(cfg.image_size // ds, ch, cfg.num_head_channels, cfg.out_channels)
            self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), head)
        else:
            self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), nn.AdaptiveAvgPool2d((1, 1)),
                                     nn.Conv2d(ch, cfg.out_channels, 1), nn.Flatten())
            nn.init.zeros_(self.out[3].weight), nn.init.zeros_(self.out[3].bias)
        # guided-diffusion starts every residual branch at zero (zero_module), after its layers drew their weights
        for m in self.modules():
            if isinstance(m, ResBlock):
                nn.init.zeros_(m.out_layers[-1].weight), nn.init.zeros_(m.out_layers[-1].bias)
            elif isinstance(m, AttentionBlock):
                nn.init.zeros_(m.proj_out.weight), nn.init.zeros_(m.proj_out.bias)
        self.divisor = 2 ** (len(cfg.channel_mult) - 1)
        self.spatial = cfg.image_size // ds

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"x must be (B, {self.config.in_channels}, H, W), got {tuple(x.shape)}")
        if self.config.pool == "attention" and x.shape[-2:] != (self.config.image_size,) * 2:
            raise ValueError(f"x: the attention pool was built for {self.config.image_size}x{self.config.image_size} "
                             f"images, got {tuple(x.shape[-2:])}")
        t = torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0])
        emb = self.time_embed(timestep_embedding(t, self.config.model_channels))
        h = x
        for block in self.input_blocks:
            h = block(h, emb)
        return self.out(self.middle_block(h, emb))
