"""Training: the data (photos, crops), and runs that resume exactly where an interrupted one stopped."""
import json
import os
import signal

import pytest
import torch

from ddrm_fast import training
from ddrm_fast.models.adm import ADMUNet

TINY = dict(model_channels=32, out_channels=3, num_res_blocks=1, channel_mult=(1, 2), attention_ds=(),
            use_scale_shift_norm=True)


def _photos():
    g = torch.Generator().manual_seed(0)
    return [torch.rand(3, 40, 56, generator=g) * 2 - 1, torch.rand(3, 48, 32, generator=g) * 2 - 1]


def test_heldout_photos_are_disjoint_from_the_training_photos():
    assert not set(training.TRAIN_PHOTOS) & set(training.HELDOUT_PHOTOS)


def test_photos_are_colour_in_the_unit_range():
    photos = training.skimage_photos(training.TRAIN_PHOTOS)
    assert len(photos) == len(training.TRAIN_PHOTOS) + 1  # stereo_motorcycle: two views
    assert all(p.shape[0] == 3 and p.min() >= -1 and p.max() <= 1 for p in photos)
    with pytest.raises(ValueError, match="not a colour photo"):
        training.skimage_photos(("camera",))
    with pytest.raises(ValueError, match="no photo"):
        training.skimage_photos(("not_a_photo",))


def test_random_crops_draw_the_photos_uniformly_and_reach_the_whole_photo():
    flat = [torch.full((3, 64, 64), -0.5), torch.full((3, 256, 256), 0.5)]
    g = torch.Generator().manual_seed(0)
    batch = next(training.random_crops(flat, 32, 4000, g))
    share = float((batch.mean(dim=(1, 2, 3)) > 0).float().mean())
    assert abs(share - 0.5) < 0.025  # 4000 draws: 3 standard deviations
    # min_scale 0: scales down to the whole photo in one crop, so a striped photo's crops see sharp stripes and,
    # where the photo shrinks 8-fold, gray; the default 0.5 never goes below half size, where they still show
    stripes = torch.zeros(3, 256, 256)
    for k in range(4):
        stripes[:, :, k::8] = 1  # 4 pixels on, 4 off
    contrast = {}
    for min_scale in (0.0, 0.5):
        crops = next(training.random_crops([stripes * 2 - 1], 32, 200, g, min_scale=min_scale))
        contrast[min_scale] = (crops[:, :, :, 1:] - crops[:, :, :, :-1]).abs().mean(dim=(1, 2, 3))
    assert float(contrast[0.0].max()) > 0.9 and float(contrast[0.0].min()) < 0.1
    assert float(contrast[0.5].min()) > 0.4
    with pytest.raises(ValueError, match="min_scale"):
        next(training.random_crops(flat, 32, 2, g, min_scale=1.5))


def test_rot90_turns_half_the_crops_across_and_keeps_where_they_are_cut():
    """Stripes along the columns stay so without rot90; with it, the crops turned by 90 or 270 degrees (half of
    them) have them along the rows. The rotation is drawn after the crop, so the first crop is the unrotated
    stream's first crop, turned."""
    stripes = torch.zeros(3, 64, 64)
    stripes[:, :, ::2] = 1
    photo = [stripes * 2 - 1]
    across = lambda c: (c[..., 1:] - c[..., :-1]).abs().mean(dim=(1, 2, 3))  # noqa: E731 - contrast along a row
    plain = next(training.random_crops(photo, 16, 400, torch.Generator().manual_seed(0), min_scale=1))
    turned = next(training.random_crops(photo, 16, 400, torch.Generator().manual_seed(0), min_scale=1, rot90=True))
    assert torch.equal(across(plain), torch.full((400,), 2.0))
    share = float((across(turned) == 2).float().mean())
    assert set(across(turned).tolist()) == {0.0, 2.0} and abs(share - 0.5) < 0.075  # 400 draws: 3 sd
    noise = [torch.rand(3, 40, 56, generator=torch.Generator().manual_seed(1)) * 2 - 1]
    first = next(training.random_crops(noise, 16, 1, torch.Generator().manual_seed(2), rot90=True))[0]
    plain = next(training.random_crops(noise, 16, 1, torch.Generator().manual_seed(2)))[0]
    assert any(torch.equal(first, plain.rot90(k, (-2, -1))) for k in range(4))


def _run(out, steps, resume=False, **kw):
    torch.manual_seed(0)
    model = ADMUNet(TINY)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    return training.train(model, betas, _photos(), str(out), steps=steps, batch_size=2, crop=16, warmup=2,
                          checkpoint_every=100, progress=False, resume=resume, **kw)


def test_an_interrupted_run_resumed_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    whole = _run(tmp_path / "whole", 4).state_dict()
    step = training._train_step

    def interrupt_after_step_1(*args):
        out = step(*args)
        if args[6] == 1:  # k: Ctrl-C arrives in the middle of the run
            signal.raise_signal(signal.SIGINT)
        return out

    monkeypatch.setattr(training, "_train_step", interrupt_after_step_1)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "cut", 4)
    monkeypatch.setattr(training, "_train_step", step)
    assert torch.load(tmp_path / "cut" / "state.pt", weights_only=True)["step"] == 2
    with pytest.raises(ValueError, match="--resume continues it"):  # never overwritten without --resume
        _run(tmp_path / "cut", 4)
    with pytest.raises(ValueError, match="another recipe .*steps"):
        _run(tmp_path / "cut", 5, resume=True)
    resumed = _run(tmp_path / "cut", 4, resume=True).state_dict()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    state = torch.load(tmp_path / "cut" / "state.pt", weights_only=True)
    assert state["step"] == 4 and state["recipe"]["steps"] == 4


def test_checkpoints_log_the_heldout_loss_which_training_lowers(tmp_path):
    held = [torch.zeros(3, 64, 64)]  # a flat photo: learned within a few steps
    _run(tmp_path / "r", 40, heldout=held, lr=3e-3)
    last = [json.loads(line) for line in open(tmp_path / "r" / "log.jsonl")][-1]
    torch.manual_seed(0)
    from ddrm_fast.diffusion import GaussianDiffusion

    untrained = training.heldout_loss(ADMUNet(TINY), GaussianDiffusion(torch.linspace(1e-4, 0.02, 1000)), held)
    assert last["step"] == 40 and last["heldout_loss"] < 0.5 * untrained
    assert os.path.exists(tmp_path / "r" / "model.safetensors")


def test_heldout_photos_are_those_the_evaluation_restores():
    photos = training.heldout_photos()
    assert [tuple(p.shape) for p in photos] == [(3, 256, 256), (3, 256, 384)]  # astronaut, coffee
    assert all(p.min() >= -1 and p.max() <= 1 and p.std() > 0.2 for p in photos)


def test_heldout_loss_is_zero_for_an_oracle_and_one_for_a_model_that_predicts_no_noise():
    from ddrm_fast.diffusion import GaussianDiffusion

    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0).float()
    x0 = torch.rand(3, 24, 32) * 2 - 1

    class Oracle(torch.nn.Module):  # knows x0, so recovers the noise exactly when it is told the right timestep
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x_t, t):
            seen.extend(t.tolist())
            a = abar[t].view(-1, 1, 1, 1)
            return (x_t - a.sqrt() * x0) / (1 - a).sqrt() + self.w

    d = GaussianDiffusion(betas)
    seen = []
    assert training.heldout_loss(Oracle(), d, [x0, x0]) < 1e-8
    assert sorted(set(seen)) == list(range(50, 1000, 100)) and len(seen) == 2 * 2 * 10  # 10 levels, 2 draws
    zero = Oracle()
    zero.forward = lambda x_t, t: torch.zeros_like(x_t)
    assert abs(training.heldout_loss(zero, d, [x0], draws=8) - 1) < 0.02  # E[eps^2] = 1
