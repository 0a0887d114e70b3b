"""DDPM/DDIM against closed-form math and Monte Carlo statistics."""
import math

import pytest
import torch

from ddrm_fast import GaussianDiffusion
from ddrm_fast.models import GaussianPriorEps
from ddrm_fast.schedules import linear_betas


@pytest.fixture(scope="module")
def diffusion():
    return GaussianDiffusion(linear_betas())


def _var_tol(var, n, k=5.0):
    # the sample variance of n normals has relative std sqrt(2 / n); allow k of them
    return k * var * math.sqrt(2.0 / n)


def test_q_sample_statistics(diffusion):
    g = torch.Generator().manual_seed(0)
    n = 200_000
    x0 = torch.full((n, 1), 0.7)
    for t in (0, 250, 999):
        xt = diffusion.q_sample(x0, t, generator=g)
        a = diffusion.abar(t).item()
        assert xt.mean().item() == pytest.approx(math.sqrt(a) * 0.7, abs=5 * math.sqrt((1 - a) / n))
        assert abs(xt.var().item() - (1 - a)) <= _var_tol(1 - a, n)


def test_predict_x0_inverts_q_sample(diffusion):
    x0 = torch.randn(4, 3, 8, 8)
    eps = torch.randn_like(x0)
    t = torch.tensor([0, 10, 500, 999])
    xt = diffusion.q_sample(x0, t, noise=eps)
    assert torch.allclose(diffusion.predict_x0_from_eps(xt, t, eps), x0, atol=1e-3)


def test_posterior_matches_monte_carlo(diffusion):
    """q(x_{t-1} | x_t, x0) by rejection-free Monte Carlo: draw x_{t-1} ~ q(.|x0), x_t ~ q(x_t|x_{t-1}), and regress
    x_{t-1} on x_t for fixed x0; the conditional mean and variance must match (c1 x0 + c2 x_t, c3)."""
    g = torch.Generator().manual_seed(1)
    n = 400_000
    for t in (1, 100, 700):
        x0 = 0.5
        a_prev = diffusion.abar(t - 1).item()
        beta = diffusion.betas[t].item()
        x_prev = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * torch.randn(n, generator=g, dtype=torch.float64)
        x_t = math.sqrt(1 - beta) * x_prev + math.sqrt(beta) * torch.randn(n, generator=g, dtype=torch.float64)
        # linear regression of x_prev on x_t: for jointly Gaussian variables this is the exact conditional
        cov = torch.cov(torch.stack([x_prev, x_t]))
        slope = (cov[0, 1] / cov[1, 1]).item()
        intercept = (x_prev.mean() - slope * x_t.mean()).item()
        resid_var = (cov[0, 0] - cov[0, 1] ** 2 / cov[1, 1]).item()
        c1, c2, c3 = (c.item() for c in diffusion.posterior_coefficients(t))
        assert slope == pytest.approx(c2, abs=0.01)
        assert intercept == pytest.approx(c1 * x0, abs=0.01)
        assert abs(resid_var - c3) <= _var_tol(c3, n)


def test_ddim_eta0_is_deterministic(diffusion):
    model = GaussianPriorEps(std=0.5)
    xT = torch.randn(2, 3, 8, 8)
    a = diffusion.ddim_sample_loop(model, xT.shape, steps=20, eta=0.0, x_T=xT, generator=torch.Generator().manual_seed(1))
    b = diffusion.ddim_sample_loop(model, xT.shape, steps=20, eta=0.0, x_T=xT, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    c = diffusion.ddim_sample_loop(model, xT.shape, steps=20, eta=1.0, x_T=xT, generator=torch.Generator().manual_seed(2))
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("method,eta", [("ddpm", 0.0), ("ddim", 0.0), ("ddim", 1.0)])
def test_exact_model_samples_the_data_variance(diffusion, method, eta):
    """Data N(0, s^2): with the exact eps, 1000-step sampling gives variance s^2. The tolerance is 5 standard errors
    of the sample variance of n draws; the 1000-step discretisation bias (under 2% for these samplers) sits inside."""
    s = 0.5
    n = 16_384
    g = torch.Generator().manual_seed(3)
    x = diffusion.sample(GaussianPriorEps(std=s), (n, 1), method=method, steps=1000, eta=eta, generator=g)
    assert abs(x.var().item() - s * s) <= _var_tol(s * s, n)
    assert abs(x.mean().item()) <= 5 * s / math.sqrt(n)


def test_training_loss_is_zero_for_the_exact_model_on_its_data():
    """For x0 = mean exactly (std -> 0), the exact model predicts eps perfectly; a wrong model does not."""
    diffusion = GaussianDiffusion(linear_betas())
    x0 = torch.zeros(64, 1, 4, 4)
    exact = GaussianPriorEps(std=1e-4)
    g = torch.Generator().manual_seed(0)
    assert diffusion.loss(exact, x0, generator=g).item() < 1e-4
    assert diffusion.loss(lambda x, t: torch.zeros_like(x), x0, generator=g).item() == pytest.approx(1.0, abs=0.1)


def test_two_channel_output_keeps_eps(diffusion):
    model = GaussianPriorEps(std=0.5)
    x = torch.randn(2, 3, 4, 4)
    t = torch.tensor([5, 6])
    twice = lambda x, t: torch.cat([model(x, t), torch.full_like(x, 9.0)], 1)  # noqa: E731
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(diffusion.p_sample(model, x, t, g1), diffusion.p_sample(twice, x, t, g2))


def test_bad_arguments(diffusion):
    with pytest.raises(ValueError, match="t must"):
        diffusion.q_sample(torch.zeros(2, 1), 1000)
    with pytest.raises(ValueError, match="noise must"):
        diffusion.q_sample(torch.zeros(2, 1), 1, noise=torch.zeros(3, 1))
    with pytest.raises(ValueError, match="betas"):
        GaussianDiffusion(torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="method"):
        diffusion.sample(GaussianPriorEps(), (1, 1), method="ode")
