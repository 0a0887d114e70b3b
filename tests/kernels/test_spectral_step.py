"""The fused spectral step of every backend against reference.spectral_step (explicit-V operators)."""
import pytest
import torch

from ddrm_fast import reference as R
from ddrm_fast.backends import get

from backends import BACKENDS, needs_backend

pytestmark = needs_backend


def _inputs(device, b=3, n=5 * 17 * 31, m=17 * 31, s_batch=1, sy_shape=(1, 1), seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    s = r(s_batch, m).abs() + 0.05
    s[:, ::5] = 0.0
    t = dict(xbar=r(b, n), epsbar=r(b, n), z=r(b, n), uty=r(b, m), s=s, sigma_y=r(*sy_shape).abs() * 0.5,
             coef=torch.tensor([0.8, 0.6, 0.9, 0.85]))
    return {k: v.to(device) for k, v in t.items()}


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("b", [1, 3])
@pytest.mark.parametrize("s_batch,sy", [(1, (1, 1)), (3, (3, 527))])
@pytest.mark.parametrize("legacy", [False, True])
def test_matches_reference(backend, device, b, s_batch, sy, legacy):
    t = _inputs(device, b=b, s_batch=min(s_batch, b), sy_shape=(min(sy[0], b), sy[1]))
    spectral = get(backend).spectral_step
    got = spectral(**t, eta=0.85, eta_b=0.7, eta_c=0.6, legacy_zero_singulars=legacy)
    want = R.spectral_step(**{k: v.cpu() for k, v in t.items()}, eta=0.85, eta_b=0.7, eta_c=0.6,
                           legacy_zero_singulars=legacy)
    for g_, w_ in zip(got, want):
        assert ((g_.cpu() - w_).abs().max() / w_.abs().max()).item() <= 1e-5


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_opcheck(backend, device):
    t = _inputs(device, s_batch=3, sy_shape=(3, 527))
    fn = torch.ops.ddrm_fast.spectral_step if backend != "triton" else torch.ops.ddrm_fast_triton.spectral_step
    if backend == "triton":
        import ddrm_fast.triton.spectral_step  # noqa: F401  (registers the op)
    torch.library.opcheck(fn.default, (t["xbar"], t["epsbar"], t["z"], t["uty"], t["s"], t["sigma_y"], t["coef"],
                                       0.85, 0.7, 0.6, False))


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("offset", [3, (1 << 32) + 1])  # a step, and the initial draw's offset past 32 bits
def test_in_kernel_philox_equals_the_reference_stream(backend, device, offset):
    # no z: each row draws element j of its own seed's Philox stream, the numbers reference.philox_normal gives
    t = _inputs(device, b=3, s_batch=3, sy_shape=(3, 527))
    seeds = torch.tensor([5, 2**62 - 1, 123456789012], device=device)
    spectral = get(backend).spectral_step
    drawn = R.philox_normal(seeds.cpu(), offset, t["xbar"].shape[1])
    got = spectral(**{**t, "z": None}, eta=0.85, eta_b=0.7, eta_c=0.6, seeds=seeds, offset=offset)
    want = R.spectral_step(**{k: v.cpu() for k, v in {**t, "z": drawn}.items()}, eta=0.85, eta_b=0.7, eta_c=0.6)
    for g_, w_ in zip(got, want):
        assert ((g_.cpu() - w_).abs().max() / w_.abs().max()).item() <= 1e-5
    with pytest.raises((RuntimeError, ValueError), match="seeds"):
        spectral(**{**t, "z": None}, eta=0.85, eta_b=0.7)
    if backend == "triton":
        import ddrm_fast.triton.spectral_step  # noqa: F401  (registers the op)
    fn = torch.ops.ddrm_fast.spectral_step if backend != "triton" else torch.ops.ddrm_fast_triton.spectral_step
    torch.library.opcheck(fn.default, (t["xbar"], t["epsbar"], None, t["uty"], t["s"], t["sigma_y"], t["coef"],
                                       0.85, 0.7, 0.6, False, seeds, offset))
