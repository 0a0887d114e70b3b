"""DDPM "simple" UNet: the DDIM code's key layout, its checkpoint containers, embedding and attention math."""
import math

import pytest
import torch

from ddrm_fast.models import DDPMUNet, load
from ddrm_fast.models.ddpm import AttnBlock, ddpm_timestep_embedding


def _small(seed=0, **kw):
    cfg = dict(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(8,), resolution=16)
    model = DDPMUNet({**cfg, **kw})
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def test_celeba_hq_preset_has_the_checkpoint_layout():
    with torch.device("meta"):
        model = DDPMUNet("celeba_hq")
    sd = model.state_dict()
    # DDPM paper: 114M parameters for the 256x256 models (celeba_hq.ckpt is 433.6 MiB of float32)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(113.67e6, rel=1e-3)
    for key, shape in [("temb.dense.0.weight", (512, 128)), ("conv_in.weight", (128, 3, 3, 3)),
                       ("down.0.block.0.conv1.weight", (128, 128, 3, 3)), ("down.4.attn.1.q.weight", (512, 512, 1, 1)),
                       ("down.2.block.0.nin_shortcut.weight", (256, 128, 1, 1)), ("down.0.downsample.conv.weight",
                                                                                  (128, 128, 3, 3)),
                       ("mid.attn_1.proj_out.weight", (512, 512, 1, 1)), ("up.5.block.2.conv1.weight",
                                                                          (512, 1024, 3, 3)),
                       ("up.4.attn.2.k.weight", (512, 512, 1, 1)), ("up.1.upsample.conv.weight", (128, 128, 3, 3)),
                       ("norm_out.weight", (128,)), ("conv_out.weight", (3, 128, 3, 3))]:
        assert tuple(sd[key].shape) == shape, key
    # attention only at the 16x16 level (level 4 of 256), in both paths
    assert {k.split(".")[1] for k in sd if k.startswith("down.") and ".attn." in k} == {"4"}
    assert "up.5.upsample.conv.weight" in sd and "up.0.upsample.conv.weight" not in sd


def test_ddim_training_checkpoint_takes_the_ema_weights(tmp_path):
    # the DDIM code saves [model, optimizer, epoch, step, ema] from a DataParallel model ("module." keys)
    model, ema = _small(0), _small(1)
    wrap = lambda sd: {f"module.{k}": v for k, v in sd.items()}  # noqa: E731
    states = [wrap(model.state_dict()), {"state": {}, "param_groups": []}, 3, 1000, wrap(ema.state_dict())]
    path = tmp_path / "ckpt.pth"
    torch.save(states, path)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([10.0, 900.0])
    with torch.no_grad():
        for use_ema, want in ((True, ema), (False, model)):
            loaded, betas = load(path, ema=use_ema)
            assert isinstance(loaded, DDPMUNet) and loaded.config.ch_mult == (1, 2, 2)
            torch.testing.assert_close(loaded(x, t), want(x, t), rtol=0, atol=0)
    assert betas.dtype == torch.float64 and betas.numel() == 1000


def test_any_size_divisible_by_the_depth():
    model = _small(2, resamp_with_conv=False)
    x, t = torch.randn(1, 3, 8, 24), torch.tensor([42.0])
    with torch.no_grad():
        assert model(x, t).shape == (1, 3, 8, 24)
    with pytest.raises(ValueError, match="multiples of 4"):
        model(torch.randn(1, 3, 6, 8), t)


def test_embedding_closed_form():
    t = torch.tensor([0.0, 7.0, 999.0])
    e = ddpm_timestep_embedding(t, 6)  # half = 3: frequencies 10000^(-i/2)
    f = torch.tensor([1.0, 10000 ** -0.5, 1e-4])
    torch.testing.assert_close(e, torch.cat([torch.sin(t[:, None] * f), torch.cos(t[:, None] * f)], 1))


def test_attention_is_softmax_qk_over_sqrt_c():
    torch.manual_seed(0)
    blk = AttnBlock(32).eval()
    for p in blk.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(2, 32, 3, 5)
    h = blk.norm(x)
    q, k, v = (m(h).flatten(2) for m in (blk.q, blk.k, blk.v))  # (B, C, T)
    w = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / math.sqrt(32), dim=-1)
    want = x + blk.proj_out(torch.einsum("bij,bcj->bci", w, v).reshape(2, 32, 3, 5))
    with torch.no_grad():
        torch.testing.assert_close(blk(x), want, rtol=1e-5, atol=1e-5)
