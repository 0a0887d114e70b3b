"""ADM UNet: equal to guided-diffusion's UNetModel on its own state_dict, public presets, precisions, layouts."""
import pytest
import torch

from ddrm_fast.models import ADM_PRESETS, ADMUNet, load
from ddrm_fast.models.adm import timestep_embedding


def _spread_weights(model, seed=0):
    """Random weights large enough that every block (attention included) moves the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            std = 0.5 if ("qkv" in name or "proj_out" in name) else 0.05
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


GD_CONFIGS = [
    dict(use_scale_shift_norm=True, resblock_updown=True, num_head_channels=32),
    dict(use_scale_shift_norm=False, resblock_updown=False, num_heads=2, num_classes=7),
    dict(use_scale_shift_norm=True, resblock_updown=False, num_heads=2, use_new_attention_order=True),
]


@pytest.mark.parametrize("kw", GD_CONFIGS)
def test_equals_guided_diffusion_on_its_checkpoint(kw, tmp_path):
    # the original architecture (guided-diffusion's unet.py, from PyPI's guided-diffusion-sdk) is the oracle
    unet = pytest.importorskip("guided_diffusion.unet")
    ref = unet.UNetModel(image_size=32, in_channels=3, model_channels=64, out_channels=6, num_res_blocks=2,
                         attention_resolutions=(2, 4), dropout=0.0, channel_mult=(1, 2, 2), **kw)
    _spread_weights(ref).eval()
    path = tmp_path / "model.pt"
    torch.save(ref.state_dict(), path)
    model, betas = load(path, num_heads=kw.get("num_heads", 1), num_head_channels=kw.get("num_head_channels", -1))
    if kw.get("use_new_attention_order"):
        # not recorded in the weights: the loader's default is the public checkpoints' legacy order
        model, _ = load(path, config={**model.config.to_dict(), "use_new_attention_order": True})
    assert isinstance(model, ADMUNet) and not model.training
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([3.0, 700.0])
    y = torch.tensor([1, 5]) if kw.get("num_classes") else None
    with torch.no_grad():
        want = ref(x, t, y) if y is not None else ref(x, t)
        got = model(x, t, y)
    assert got.shape == (2, 6, 32, 32)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(betas, torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64).float().double())


def test_wrong_head_count_changes_the_output():
    # the comparison above is sensitive to attention: a different head split gives a different network
    a = _spread_weights(ADMUNet(dict(model_channels=64, channel_mult=(1, 2), attention_ds=(1, 2), num_heads=1)))
    b = ADMUNet(dict(model_channels=64, channel_mult=(1, 2), attention_ds=(1, 2), num_heads=4))
    b.load_state_dict(a.state_dict())
    x, t = torch.randn(1, 3, 16, 16), torch.tensor([10.0])
    with torch.no_grad():
        assert (a(x, t) - b(x, t)).abs().max() > 1e-4


@pytest.mark.parametrize("name,millions", [("imagenet256", 552.8), ("imagenet256_cond", 553.8), ("ffhq256", 93.6)])
def test_presets_have_the_public_checkpoints_size(name, millions):
    # ADM paper: 554M parameters for ImageNet 256 (conditional); ffhq_10m.pt holds 93.6M float32 values (357 MiB)
    with torch.device("meta"):
        model = ADMUNet(name)
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(millions, abs=0.05)
    cfg = ADM_PRESETS[name]
    assert cfg.out_channels == 6 and cfg.resblock_updown and cfg.use_scale_shift_norm


def test_timestep_embedding_closed_form():
    t = torch.tensor([0.0, 5.0, 999.0])
    e = timestep_embedding(t, 8)
    freqs = torch.exp(-torch.log(torch.tensor(10000.0)) * torch.arange(4) / 4)
    torch.testing.assert_close(e, torch.cat([torch.cos(t[:, None] * freqs), torch.sin(t[:, None] * freqs)], 1))


def _small(**kw):
    cfg = dict(model_channels=32, out_channels=6, num_res_blocks=1, channel_mult=(1, 2), attention_ds=(2,),
               num_head_channels=32, use_scale_shift_norm=True, resblock_updown=True)
    return _spread_weights(ADMUNet({**cfg, **kw})).eval()


def test_any_size_divisible_by_the_depth_and_channels_last():
    model = _small()
    x = torch.randn(2, 3, 12, 20)
    t = torch.tensor([1.0, 500.0])
    with torch.no_grad():
        out = model(x, t)
        out_cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last), t)
    assert out.shape == (2, 6, 12, 20)
    torch.testing.assert_close(out_cl, out, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="multiples of 2"):
        model(torch.randn(1, 3, 13, 20), t[:1])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_torso_stays_close(dtype):
    model = _small()
    x, t = torch.randn(1, 3, 16, 16), torch.tensor([250.0])
    with torch.no_grad():
        want = model(x, t)
        got = model.to_dtype(dtype)(x, t)
    assert got.dtype == torch.float32  # the output layer runs in the input's dtype, like guided-diffusion
    assert model.input_blocks[0][0].weight.dtype == dtype
    assert model.input_blocks[1][0].in_layers[0].weight.dtype == torch.float32  # norms stay float32
    rel = (got - want).norm() / want.norm()
    assert rel < (0.03 if dtype == torch.bfloat16 else 0.005)


def test_class_labels_exactly_when_conditional():
    cond = _small(num_classes=3)
    x, t = torch.randn(1, 3, 8, 8), torch.tensor([1.0])
    with pytest.raises(ValueError, match="class-conditional"):
        cond(x, t)
    with pytest.raises(ValueError, match="class-conditional"):
        _small()(x, t, torch.tensor([0]))
    with torch.no_grad():
        assert not torch.equal(cond(x, t, torch.tensor([0])), cond(x, t, torch.tensor([2])))


def test_config_errors_name_the_field_or_preset():
    with pytest.raises(ValueError, match=r"unknown ADMConfig fields \['heads'\]"):
        ADMUNet(dict(model_channels=32), heads=2)
    with pytest.raises(ValueError, match="unknown preset 'imagenet512'"):
        ADMUNet("imagenet512")
    with torch.device("meta"):
        assert ADMUNet("ffhq256", num_res_blocks=2).config.num_res_blocks == 2  # presets take overrides
