"""models.load: format detection, clear errors for bad files, our safetensors, diffusers folders, the embedded model."""
import json
import re

import pytest
import torch

from ddrm_fast.models import ADMUNet, CheckpointError, DDPMUNet, default_model, load, save
from ddrm_fast.schedules import cosine_betas


def _adm():
    torch.manual_seed(0)
    return ADMUNet(dict(model_channels=32, out_channels=6, num_res_blocks=1, channel_mult=(1, 2), attention_ds=(2,),
                        num_head_channels=32, use_scale_shift_norm=True, resblock_updown=True)).eval()


def test_missing_key_is_named(tmp_path):
    sd = _adm().state_dict()
    del sd["output_blocks.1.0.emb_layers.1.weight"]
    torch.save(sd, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"missing 1 keys \(output_blocks\.1\.0\.emb_layers\.1\.weight\)"):
        load(tmp_path / "m.pt", num_head_channels=32)


def test_missing_inference_key_is_named(tmp_path):
    sd = _adm().state_dict()
    del sd["out.2.weight"]
    torch.save(sd, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="missing 'out.2.weight'"):
        load(tmp_path / "m.pt")


def test_shape_mismatch_against_a_given_config(tmp_path):
    torch.save(_adm().state_dict(), tmp_path / "m.pt")
    cfg = {**_adm().config.to_dict(), "model_channels": 64}
    with pytest.raises(CheckpointError, match=r"model_channels=64 does not match the weights \(32\)"):
        load(tmp_path / "m.pt", arch="adm", config=cfg)


def test_truncated_file(tmp_path):
    torch.save(_adm().state_dict(), tmp_path / "m.pt")
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load(tmp_path / "cut.pt")
    (tmp_path / "cut.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load(tmp_path / "cut.safetensors")


def test_not_found_and_foreign_state_dicts(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load(tmp_path / "nope.pt")
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="neither an ADM"):
        load(tmp_path / "other.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="without a state_dict"):
        load(tmp_path / "list.pt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(CheckpointError, match="not a diffusers model"):
        load(tmp_path / "folder")


def test_pickles_are_refused(tmp_path):
    # weights_only: a checkpoint that needs arbitrary code to unpickle is not executed
    torch.save({"model": _adm()}, tmp_path / "pickled.pt")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load(tmp_path / "pickled.pt")


@pytest.mark.parametrize("make", [_adm, lambda: DDPMUNet(dict(ch=32, ch_mult=(1, 2), num_res_blocks=1,
                                                               attn_resolutions=(4,), resolution=8)).eval()])
def test_own_safetensors_round_trip(make, tmp_path):
    model = make()
    betas = cosine_betas(200).double()
    save(model, tmp_path / "m.safetensors", betas, note="x")
    loaded, got_betas = load(tmp_path / "m.safetensors")
    assert type(loaded) is type(model) and loaded.config == model.config
    torch.testing.assert_close(got_betas, betas, rtol=0, atol=0)
    x, t = torch.randn(1, 3, 8, 8), torch.tensor([3.0])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t), model(x, t), rtol=0, atol=0)
    _, lin = load(tmp_path / "m.safetensors", schedule="linear")
    assert lin.numel() == 1000


def test_diffusers_folder_with_its_scheduler(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(32, 64),
                                 down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                 up_block_types=("AttnUpBlock2D", "UpBlock2D"), layers_per_block=1,
                                 norm_num_groups=32).eval()
    unet.save_pretrained(tmp_path / "pipe" / "unet")
    (tmp_path / "pipe" / "scheduler").mkdir()
    (tmp_path / "pipe" / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2"}))
    model, betas = load(tmp_path / "pipe")
    torch.testing.assert_close(betas, cosine_betas(1000).double())
    sched = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    torch.testing.assert_close(betas.float(), sched.betas.float(), rtol=1e-6, atol=1e-7)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([5.0, 600.0])
    with torch.no_grad():
        torch.testing.assert_close(model(x, t), unet(x, t).sample)
    # the unet folder alone: the default linear schedule
    _, lin = load(tmp_path / "pipe" / "unet")
    assert lin.numel() == 1000
    (tmp_path / "pipe" / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        {"prediction_type": "v_prediction"}))
    with pytest.raises(CheckpointError, match="eps-prediction"):
        load(tmp_path / "pipe")


def test_embedded_model_restores_images_of_any_size():
    model, betas = default_model()
    assert isinstance(model, ADMUNet) and betas.numel() == 1000
    assert not model.training
    x = torch.randn(1, 3, 24, 40)
    with torch.no_grad():
        eps = model(x, torch.tensor([500.0]))
    assert eps.shape == x.shape and torch.isfinite(eps).all()


# --- crafted files: every one a CheckpointError naming the file, nothing large allocated ---------------------------
def _saved_with_meta(tmp_path, meta, sd=None):
    from safetensors.torch import save_file

    path = tmp_path / "m.safetensors"
    sd = {k: v.contiguous() for k, v in (sd or _adm().state_dict()).items()}
    save_file(sd, str(path), metadata=None if meta is None else {"ddrm_fast": meta})
    return path


@pytest.mark.parametrize("meta,message", [
    ("[]", "its 'ddrm_fast' metadata is not an object"),
    ("not json", "its 'ddrm_fast' metadata is not JSON"),
    (json.dumps({"arch": "unet"}), "metadata arch 'unet' is not 'adm' or 'ddpm'"),
    (json.dumps({"config": [1]}), "metadata config is not an object"),
    (json.dumps({"betas": [0.5, 2.0]}), "metadata betas must be a list"),
    (json.dumps({"arch": "adm", "config": {"model_channels": "wide"}}), "configuration"),
])
def test_bad_metadata_names_the_file(tmp_path, meta, message):
    path = _saved_with_meta(tmp_path, meta)
    with pytest.raises(CheckpointError, match=message) as exc:
        load(path)
    assert str(path) in str(exc.value)


def test_a_huge_configuration_is_refused_before_anything_is_built(tmp_path, monkeypatch):
    """metadata claiming model_channels=4096 on the small weights: refused by comparing with the shapes; a config
    that agrees on the shapes but not on the modules is compared on the meta device. Nothing real is built."""
    from ddrm_fast.models import loader

    built = []
    real_build = loader._build

    def spy(arch, config):
        built.append(torch.empty(0).device.type)  # the default device the build allocates on
        return real_build(arch, config)

    monkeypatch.setattr(loader, "_build", spy)
    cfg = _adm().config.to_dict()
    path = _saved_with_meta(tmp_path, json.dumps({"arch": "adm", "config": {**cfg, "model_channels": 4096}}))
    with pytest.raises(CheckpointError, match=r"model_channels=4096 does not match the weights \(32\)"):
        load(path)
    assert built == []
    path = _saved_with_meta(tmp_path, json.dumps({"arch": "adm", "config": {**cfg, "attention_ds": [1, 2]}}))
    with pytest.raises(CheckpointError, match="does not match ADMUNet: missing"):
        load(path)
    assert built == ["meta"]


@pytest.mark.parametrize("key,shape", [("time_embed.0.weight", (4,)), ("time_embed.0.weight", (128, 0)),
                                       ("input_blocks.1.0.emb_layers.1.weight", (2, 2, 2))])
def test_tensors_of_the_wrong_rank_are_named(tmp_path, key, shape):
    sd = _adm().state_dict()
    sd[key] = torch.zeros(shape)
    torch.save(sd, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=re.escape(f"{key} has shape {tuple(shape)}")):
        load(tmp_path / "m.pt")


def test_only_regular_model_files_are_opened(tmp_path):
    import os

    os.mkfifo(tmp_path / "fifo.pt")  # torch.load would block reading it
    with pytest.raises(CheckpointError, match="a FIFO, not a regular file"):
        load(tmp_path / "fifo.pt")
    with pytest.raises(CheckpointError, match="a device, not a regular file"):
        load("/dev/zero")


def test_loaded_models_are_in_eval_mode(tmp_path):
    assert not default_model().model.training
    model = _adm().train()
    save(model, tmp_path / "m.safetensors", torch.linspace(1e-4, 0.02, 1000))
    assert not load(tmp_path / "m.safetensors").model.training


def _diffusers_folder(path):
    diffusers = pytest.importorskip("diffusers")
    unet = diffusers.UNet2DModel(sample_size=16, block_out_channels=(32, 64), norm_num_groups=8, layers_per_block=1,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"))
    unet.save_pretrained(path)
    return json.loads((path / "config.json").read_text())


@pytest.mark.parametrize("file,text,match", [
    ("config.json", "[1, 2, 3]", "config.json: expected a JSON object, got a list"),
    ("config.json", "{not json", "config.json: not JSON"),
    ("scheduler_config.json", '{"num_train_timesteps": 1000000000000}',
     r"num_train_timesteps 1000000000000 must be an integer in \[1, 100000\]"),
    ("scheduler_config.json", '{"num_train_timesteps": "1000"}', "num_train_timesteps '1000' must be an integer"),
    ("scheduler_config.json", '{"trained_betas": [0.5, 2]}', "trained_betas must be a list"),
    ("scheduler_config.json", '["linear"]', "scheduler_config.json: expected a JSON object, got a list"),
    ("scheduler_config.json", '{"beta_start": "x"}', "beta_start 'x' is not a number"),
])
def test_a_diffusers_folder_that_declares_nonsense_is_refused_before_allocating(tmp_path, file, text, match):
    _diffusers_folder(tmp_path / "m")
    (tmp_path / "m" / file).write_text(text)
    with pytest.raises(CheckpointError, match=match):
        load(tmp_path / "m")


def test_a_diffusers_config_larger_than_its_weights_is_refused_on_the_meta_device(tmp_path):
    cfg = _diffusers_folder(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps(dict(cfg, block_out_channels=[10**5, 2 * 10**5])))
    with pytest.raises(CheckpointError, match=r"declares \d+ parameters, more than its weights files"):
        load(tmp_path / "m")  # 6.8e12 parameters: 27 TB if it were allocated
    (tmp_path / "m" / "config.json").write_text(json.dumps(dict(cfg, block_out_channels=[16, 32])))
    with pytest.raises(CheckpointError, match="diffusers could not load it .*size mismatch for conv_in.weight"):
        load(tmp_path / "m")


def test_a_diffusers_folder_loads_without_a_word_on_stderr(tmp_path):
    # a fresh process: diffusers says some things once per process only
    import subprocess
    import sys

    _diffusers_folder(tmp_path / "m")
    p = subprocess.run([sys.executable, "-c", "import sys; from ddrm_fast.models import load; load(sys.argv[1])",
                        str(tmp_path / "m")], capture_output=True, text=True)
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")


def test_loading_a_model_draws_nothing_from_the_generator(tmp_path):
    # the weights come from the file: a seeded stream continues the same with or without a model loaded (the
    # original runner's draws follow its own model's construction, not the loader's)
    torch.manual_seed(7)
    want = torch.rand(4)
    torch.manual_seed(7)
    model, _ = default_model()
    torch.testing.assert_close(torch.rand(4), want, rtol=0, atol=0)
    assert all(torch.isfinite(p).all() for p in model.parameters())
