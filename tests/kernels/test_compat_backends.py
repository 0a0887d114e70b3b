"""compat's drop-in loop on every fused backend: the original's golden vectors, and equal to the same loop on the
reference (same draws) for every class of the original code and for a user's own H_functions."""
import pytest
import torch

from ddrm_fast import compat
from ddrm_fast.schedules import linear_betas

from backends import BACKENDS, INTERPRET, needs_backend
from conftest import GOLDEN_CASES, golden_case, golden_eps_model, golden_operator, golden_x_init

pytestmark = needs_backend
BETAS = linear_betas()


class Flipped(compat.H_functions):
    """What a user might write: H = I in a reversed basis (not one of the original's classes)."""

    def __init__(self, n, device):
        self.n, self.device = n, device

    def V(self, vec):
        return vec.reshape(vec.shape[0], -1).flip(1)

    Vt = U = Ut = V

    def singulars(self):
        return torch.ones(self.n, device=self.device)

    def add_zeros(self, vec):
        return vec.reshape(vec.shape[0], -1)


def _classes(device="cpu"):
    g = torch.Generator().manual_seed(3)
    k = torch.tensor([1 / 9] * 9, device=device)
    return {
        "deno": compat.Denoising(3, 16, device),
        "inp": compat.Inpainting(3, 16, torch.randperm(768, generator=g)[:300].to(device), device),
        "sr2": compat.SuperResolution(3, 16, 2, device),
        "sr4": compat.SuperResolution(3, 16, 4, device),
        "color": compat.Colorization(16, device),
        "deblur": compat.Deblurring(k, 3, 16, device),
        "deblur2d": compat.Deblurring2D(k[:5] * 1.8, k, 3, 16, device),
        "srconv": compat.SRConv(torch.tensor([0.25, 0.75, 0.75, 0.25], device=device) / 2, 3, 16, device, stride=2),
        "cs": compat.WalshHadamardCS(3, 16, 4, torch.randperm(256, generator=g).to(device), device),
        "general": compat.GeneralH(torch.randn(100, 768, generator=g).to(device)),
        "user": Flipped(768, device),
    }


def _run(name, backend, device, etas=(0.85, 0.85), sigma_0=0.1):
    H = _classes(device)[name]
    x_orig = 0.5 * torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)).to(device)
    clean = H.H(x_orig)
    y = clean + sigma_0 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(2)).to(device)
    torch.manual_seed(0)  # the same draws on every backend
    x = torch.randn(2, 3, 16, 16)
    return compat.efficient_generalized_steps(x.to(device), range(0, 1000, 200), golden_eps_model(BETAS),
                                              BETAS.to(device), H, y, sigma_0, etaB=0.9, etaA=etas[0], etaC=etas[1],
                                              backend=backend)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("name", list(_classes()))
def test_every_class_equals_the_reference_loop(backend, device, name):
    want_xs, want_x0 = _run(name, "reference", "cpu")
    got_xs, got_x0 = _run(name, backend, device)
    assert len(got_xs) == len(want_xs) and len(got_x0) == len(want_x0)
    for got, want in ((got_xs[1], want_xs[1]), (got_xs[-1], want_xs[-1]), (got_x0[-1], want_x0[-1])):
        torch.testing.assert_close(got.cpu(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_unequal_etas_take_the_spectral_step_and_still_agree(backend, device):
    # etaA != etaC: the one-pass step has one eta
    want = _run("sr2", "reference", "cpu", etas=(0.5, 0.9))[0][-1]
    torch.testing.assert_close(_run("sr2", backend, device, etas=(0.5, 0.9))[0][-1].cpu(), want, rtol=1e-4, atol=1e-4)


# the Triton interpreter runs a program at a time (half a minute per case for the one-pixel groups): one noise level
# per task there, and denoising's one-pixel groups left to inpainting's; every case elsewhere
@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("name", [c for c in GOLDEN_CASES
                                  if not INTERPRET or (c.endswith("s0.1") and c != "deno_s0.1")])
def test_golden_vectors_on_every_backend(golden, backend, device, name):
    meta, data = golden_case(golden, name)
    xs, x0_preds = compat.efficient_generalized_steps(
        golden_x_init(meta).to(device), range(0, 1000, 1000 // meta["steps"]), golden_eps_model(BETAS),
        BETAS.to(device), golden_operator(meta, data, device), data["y0"].to(device), meta["sigma_0"],
        etaB=meta["etaB"], etaA=meta["eta"], etaC=meta["eta"], backend=backend)
    for got, want in ((xs[1], data["x_step1"]), (xs[-1], data["x_final"]), (x0_preds[-1], data["x0_last"])):
        assert (got.cpu() - want).abs().max() <= 1e-3
