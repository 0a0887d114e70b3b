import math

import pytest
import torch

from ddrm_fast import schedules


def test_linear_matches_ddpm():
    b = schedules.linear_betas()
    assert b.dtype == torch.float32 and b.shape == (1000,)
    assert b[0].item() == pytest.approx(1e-4) and b[-1].item() == pytest.approx(0.02)
    # computed in float64, then cast (as the original): equal to the cast of numpy-style linspace
    assert torch.equal(b, torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64).float())


def test_cosine_abar_follows_the_closed_form():
    b = schedules.cosine_betas(1000).double()
    abar = torch.cumprod(1 - b, 0)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 10, 500, 900):
        assert abar[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-5)
    assert b.max().item() <= 0.999 + 1e-7


def test_abar_table_has_abar_minus_one_equal_one():
    b = schedules.linear_betas()
    table = schedules.abar_table(b)
    assert table[0].item() == 1.0
    assert torch.allclose(table[1:], torch.cumprod(1 - b, 0))


def test_ddrm_timesteps():
    assert schedules.ddrm_timesteps(20) == list(range(0, 1000, 50))
    assert schedules.ddrm_timesteps(1000)[-1] == 999
    with pytest.raises(ValueError, match="steps"):
        schedules.ddrm_timesteps(0)
    with pytest.raises(ValueError, match="steps"):
        schedules.ddrm_timesteps(1001)


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="beta_start"):
        schedules.linear_betas(10, 0.1, 0.01)
    with pytest.raises(ValueError, match="schedule must be"):
        schedules.get_betas("quadratic")


def test_a_runner_config_cannot_declare_a_schedule_of_gigabytes():
    # an original config's num_diffusion_timesteps is read from the user's file: bounded before anything is allocated
    with pytest.raises(ValueError, match=r"num_diffusion_timesteps must lie in \[1, 100000\], got 1000000000000"):
        schedules.runner_betas("linear", 1e-4, 0.02, 10**12)
    assert schedules.runner_betas("linear", 1e-4, 0.02, schedules.MAX_TIMESTEPS).numel() == schedules.MAX_TIMESTEPS
