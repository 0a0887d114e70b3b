"""The drop-in API and the sampler against the original DDRM's outputs (max |diff| <= 1e-3, quirks included)."""
import pytest
import torch

from ddrm_fast import compat, ddrm_sample, operators, ops
from ddrm_fast.schedules import linear_betas

from conftest import GOLDEN_CASES as CASES, golden_case as _case, golden_eps_model, golden_operator, golden_x_init

TOL = 1e-3


def test_every_golden_case_is_covered(golden):
    assert sorted(c["name"] for c in golden[1]) == sorted(CASES)


@pytest.mark.parametrize("backend", ["reference"] + (["cpu"] if ops.has_cpu() else []))
@pytest.mark.parametrize("name", CASES)
def test_compat_efficient_generalized_steps(golden, name, backend):
    meta, data = _case(golden, name)
    betas = linear_betas()
    x = golden_x_init(meta)
    assert torch.equal(x, data["x_init"])
    seq = range(0, 1000, 1000 // meta["steps"])
    xs, x0_preds = compat.efficient_generalized_steps(
        x, seq, golden_eps_model(betas), betas, golden_operator(meta, data), data["y0"], meta["sigma_0"],
        etaB=meta["etaB"], etaA=meta["eta"], etaC=meta["eta"], backend=backend)
    assert len(xs) == meta["steps"] + 1 and len(x0_preds) == meta["steps"]
    assert (xs[1] - data["x_step1"]).abs().max() <= TOL
    assert (xs[-1] - data["x_final"]).abs().max() <= TOL
    assert (x0_preds[-1] - data["x0_last"]).abs().max() <= TOL


@pytest.mark.parametrize("name", CASES)
def test_compat_H_reproduces_y0(golden, name):
    """The measurement the original made: H(x_orig) + noise, within the noise level."""
    meta, data = _case(golden, name)
    y = golden_operator(meta, data).H(data["x_orig"])
    assert y.shape == data["y0"].shape
    assert (y - data["y0"]).abs().max() <= 5 * meta["sigma_0"] + 1e-4


def _natural_operator_and_y(meta, data):
    """ddrm_fast.operators equivalent of the original's operator, and y0 in its natural layout."""
    y0, b = data["y0"], meta["batch"]
    if meta["deg"] == "deno":
        return operators.Denoise((3, 32, 32)), y0.view(b, 3, 32, 32)
    if meta["deg"] == "inp":
        op = operators.Inpaint.from_missing_indices(data["missing_indices"], (3, 32, 32))
        pixel_major = torch.zeros(b, 3 * 32 * 32)
        pixel_major[:, op.observed[0].view(3, -1).t().reshape(-1).bool()] = y0
        return op, pixel_major.view(b, 1024, 3).permute(0, 2, 1).reshape(b, 3, 32, 32)
    if meta["deg"] == "sr4":
        return operators.SuperRes(4, (3, 32, 32)), y0.view(b, 3, 8, 8)
    if meta["deg"] == "color":
        return operators.Colorize((3, 32, 32), weights=[0.3333, 0.3334, 0.3333]), y0.view(b, 1, 32, 32)
    raise AssertionError(meta["deg"])


@pytest.mark.parametrize("name", [c for c in CASES if not c.startswith("deblur")])
def test_ddrm_sample_compat_noise(golden, name):
    meta, data = _case(golden, name)
    op, y = _natural_operator_and_y(meta, data)
    # the natural operator measures what the original measured (noise-free part)
    clean = op.H(data["x_orig"])
    assert (clean - y).abs().max() <= 5 * meta["sigma_0"] + 1e-4
    out = ddrm_sample(golden_eps_model(linear_betas()), y, op, meta["sigma_0"], steps=meta["steps"], eta=meta["eta"],
                      eta_b=meta["etaB"], noise="compat", x_T=golden_x_init(meta))
    assert (out - data["x_final"]).abs().max() <= TOL


def test_torch_svd_signs_as_the_original():
    """The golden README: U = -1 for SuperResolution and Colorization (torch's SVD signs)."""
    assert compat.SuperResolution(3, 8, 2, "cpu").U_small.item() == -1
    assert compat.Colorization(8, "cpu").U_small.item() == -1
