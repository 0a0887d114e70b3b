"""Task names -> operators, degradations and measurements, as the original runner defines them."""
import pytest
import torch

from ddrm_fast import operators as O
from ddrm_fast import tasks


def test_every_task_builds_and_degrades():
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    g = torch.Generator().manual_seed(0)
    for task in tasks.TASKS:
        op = tasks.make_operator(task, (3, 16, 16), generator=g)
        y = tasks.degrade(x, op, 0.0)
        torch.testing.assert_close(y, op.H(x))
        assert torch.isfinite(op.H_pinv(y)).all()


def test_operator_choices_match_the_original_runner():
    assert isinstance(tasks.make_operator("sr4", (3, 8, 8)), O.SuperRes)
    blur = tasks.make_operator("deblur_uni", (3, 16, 16))
    torch.testing.assert_close(blur.kernel_r, torch.full((9,), 1 / 9))
    gauss = tasks.make_operator("deblur_gauss", (3, 16, 16)).kernel_r
    pdf = torch.exp(-0.5 * (torch.arange(-2.0, 3.0) / 10) ** 2)  # the original: sigma 10, 5 taps, normalised
    torch.testing.assert_close(gauss, pdf / pdf.sum())
    # random inpainting: about half of the pixels missing, the same in every channel
    op = tasks.make_operator("inp", (3, 64, 64), generator=torch.Generator().manual_seed(1))
    obs = op.observed.reshape(3, 64, 64)
    assert torch.equal(obs[0], obs[2]) and 0.45 < obs.mean() < 0.55


def test_bad_sizes_and_masks_name_the_problem():
    with pytest.raises(ValueError, match="not divisible by the ratio 4"):
        tasks.make_operator("sr4", (3, 30, 32))
    with pytest.raises(ValueError, match="does not match the image"):
        tasks.make_operator("inp", (3, 8, 8), mask=torch.ones(8, 9))
    with pytest.raises(ValueError, match="task must be one of"):
        tasks.make_operator("sr3", (3, 8, 8))


def test_observed_measurements():
    g = torch.rand(1, 8, 12) * 2 - 1
    op, y = tasks.measurement_from_observed("color", g)
    torch.testing.assert_close(y, op.H(g.expand(3, -1, -1)[None]))  # a gray image is H of its gray RGB version
    low = torch.rand(3, 4, 6)
    op, y = tasks.measurement_from_observed("sr4", low)
    assert op.image_shape == (3, 16, 24) and torch.equal(y[0], low)
    mask = torch.zeros(8, 12)
    mask[:, :6] = 1
    img = torch.rand(3, 8, 12)
    op, y = tasks.measurement_from_observed("inp", img, mask)
    assert torch.equal(y[0, :, :, 6:], torch.zeros(3, 8, 6)) and torch.equal(y[0, :, :, :6], img[:, :, :6])
    with pytest.raises(ValueError, match="needs --mask"):
        tasks.measurement_from_observed("inp", img)
    with pytest.raises(ValueError, match="cs4"):
        tasks.measurement_from_observed("cs4", img)


def test_noise_only_on_measured_entries():
    mask = torch.zeros(8, 8)
    mask[:4] = 1
    op = tasks.make_operator("inp", (3, 8, 8), mask=mask)
    y = tasks.degrade(torch.zeros(1, 3, 8, 8), op, 0.5, torch.Generator().manual_seed(0))
    assert (y[..., 4:, :] == 0).all() and (y[..., :4, :] != 0).all()
