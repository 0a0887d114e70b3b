"""The compiled spectral step against the reference, on every device the build has."""
import pytest
import torch

from ddrm_fast import ddrm_sample, ops, operators as O, reference
from ddrm_fast.models import GaussianPriorEps

pytestmark = pytest.mark.skipif(not ops.has_cpu(), reason=f"ddrm_fast._C not built: {ops.extension_error()}")

DEVICES = ["cpu"] + (["cuda"] if ops.has_cuda() else [])


def _inputs(device, b=3, n=50, m=31, s_batch=1, sy_shape=(1, 1), legacy=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    s = r(s_batch, m).abs() + 0.05
    s[:, ::5] = 0.0  # zero singular values: unmeasured (or the original's case 2 with legacy)
    sy = r(*sy_shape).abs() * 0.5
    coef = torch.tensor([0.8, 0.6, 0.9, 0.85])
    t = dict(xbar=r(b, n), epsbar=r(b, n), z=r(b, n), uty=r(b, m), s=s, sigma_y=sy, coef=coef)
    return {k: v.to(device) for k, v in t.items()}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("s_batch,sy_shape", [(1, (1, 1)), (3, (3, 1)), (1, (1, 31)), (3, (3, 31))])
@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("etas", [(0.85, 1.0, 0.85), (0.3, 0.6, 0.9), (1.0, 0.0, 0.0)])
def test_matches_reference(device, s_batch, sy_shape, legacy, etas):
    t = _inputs(device, s_batch=s_batch, sy_shape=sy_shape)
    want = reference.spectral_step(**t, eta=etas[0], eta_b=etas[1], eta_c=etas[2], legacy_zero_singulars=legacy)
    got = ops.spectral_step(**t, eta=etas[0], eta_b=etas[1], eta_c=etas[2], legacy_zero_singulars=legacy)
    for g, w in zip(got, want):
        assert g.device == w.device and g.shape == w.shape
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_all_three_cases_are_exercised(device):
    """Guard against a test that passes by never leaving one case: each case changes the output."""
    t = _inputs(device, sy_shape=(1, 31))
    base = ops.spectral_step(**t, eta=0.85, eta_b=1.0)[0]
    bumped = dict(t, uty=t["uty"] + 1.0)
    changed = (ops.spectral_step(**bumped, eta=0.85, eta_b=1.0)[0] != base)[:, :31]
    assert changed.any() and not changed.all()  # cases 1 and 2 read y, case 3 does not


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    t = _inputs(device)
    torch.library.opcheck(torch.ops.ddrm_fast.spectral_step.default,
                          (t["xbar"], t["epsbar"], t["z"], t["uty"], t["s"], t["sigma_y"], t["coef"], 0.85, 1.0, 0.85,
                           False))


@pytest.mark.parametrize("change,match", [
    (dict(xbar=torch.zeros(3, 50, dtype=torch.float64)), "xbar must be float32"),
    (dict(epsbar=torch.zeros(3, 49)), r"epsbar must have shape \(3, 50\)"),
    (dict(z=torch.zeros(50, 3).t()), "z must be contiguous"),
    (dict(uty=torch.zeros(3, 60)), "uty must be"),
    (dict(s=torch.zeros(2, 31)), "s must be"),
    (dict(sigma_y=torch.zeros(1, 7)), "sigma_y must be"),
    (dict(coef=torch.zeros(3)), "coef must be"),
])
def test_checks_name_the_argument(change, match):
    t = _inputs("cpu")
    t.update(change)
    with pytest.raises(RuntimeError, match=match):
        ops.spectral_step(**t, eta=0.85, eta_b=1.0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("make", [lambda: O.SuperRes(4, (3, 16, 12)), lambda: O.Blur([1 / 9] * 9, (3, 16, 12)),
                                  lambda: O.Inpaint((torch.rand(2, 1, 16, 12) > 0.5).float(), channels=3)])
def test_whole_sample_equals_reference(device, make):
    op = make().to(device)
    x = 0.5 * torch.randn(2, 3, 16, 12, device=device)
    y = op.H(x)
    model = GaussianPriorEps(std=0.5).to(device)
    outs = [ddrm_sample(model, y, op, 0.05, generator=torch.Generator().manual_seed(0), backend=be)
            for be in ("reference", device)]
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("which", ["eps", "y", "z"])
def test_a_meta_tensor_among_cpu_tensors_is_a_device_error(which):
    """A meta tensor routes the call to the op's fake implementation, which must refuse mixed devices rather than
    return uninitialised memory on the CPU."""
    op = O.SuperRes(2, (3, 4, 6))
    t = dict(x=torch.zeros(1, 3, 4, 6), eps=torch.zeros(1, 3, 4, 6), y=torch.zeros(1, 18), z=torch.zeros(1, 3, 4, 6))
    t[which] = t[which].to("meta")
    with pytest.raises(RuntimeError, match=f"{which} must be on cpu"):
        ops.group_step(t["x"], t["eps"], t["y"], op.weights, None, torch.zeros(1, 1), torch.ones(4), t["z"], None, 0,
                       op.group_shape, 0.85, 1.0)
    s = _inputs("cpu")
    s["epsbar"] = s["epsbar"].to("meta")
    with pytest.raises(RuntimeError, match="epsbar must be on cpu"):
        ops.spectral_step(**s, eta=0.85, eta_b=1.0)
    meta = {k: v.to("meta") for k, v in _inputs("cpu").items()}  # all on meta: shapes only, as before
    assert ops.spectral_step(**meta, eta=0.85, eta_b=1.0)[0].device.type == "meta"


def test_auto_picks_the_compiled_backend_on_cpu():
    from ddrm_fast import backends

    assert backends.resolve("auto", torch.device("cpu")).name == "cpu"
