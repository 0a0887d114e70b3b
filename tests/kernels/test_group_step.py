"""The grouped one-pass step of every fused backend against reference.group_step (and that against the explicit
SVD step), over operators x ratios x odd shapes x batch x dtypes x layouts; Philox noise; opcheck; compile."""
import pytest
import torch

from ddrm_fast import operators as O, reference as R
from ddrm_fast.backends import get

from backends import BACKENDS, INTERPRET, needs_backend

pytestmark = needs_backend


def _ops(b):
    g = torch.Generator().manual_seed(b)
    return {
        "denoise": O.Denoise((3, 17, 31)),
        "inpaint": O.Inpaint((torch.rand(b, 1, 17, 31, generator=g) > 0.5).float(), channels=3),
        # rows longer than the CPU kernel's 256-value chunks, a mask per image
        "inpaint_wide": O.Inpaint((torch.rand(b, 1, 3, 600, generator=g) > 0.5).float(), channels=3),
        "sr2": O.SuperRes(2, (3, 18, 30)),
        "sr3": O.SuperRes(3, (3, 15, 21)),
        "sr4": O.SuperRes(4, (3, 16, 28)),
        "sr9": O.SuperRes(9, (3, 18, 27)),  # 81 values a group: the generic two-pass update on every backend
        "sr2_masked": O.SuperRes(2, (3, 18, 30), observed=torch.rand(b, 1, 9, 15, generator=g) > 0.3),
        "color": O.Colorize((3, 17, 31), weights=[0.299, 0.587, 0.114]),
    }


def _case(op, b, dtype, layout, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    c, h, w = op.image_shape
    x = torch.randn(b, c, h, w, generator=g).to(dtype)
    eps2 = torch.randn(b, 2 * c, h, w, generator=g).to(dtype)
    eps = eps2[:, :c] if layout == "strided_eps" else eps2[:, :c].contiguous()
    if layout == "channels_last":
        x, eps = x.contiguous(memory_format=torch.channels_last), eps.contiguous(memory_format=torch.channels_last)
    z = torch.randn(b, c, h, w, generator=g)
    y = (op.H(torch.randn(b, c, h, w, generator=g)) + 0.05 * torch.randn(b, *op.y_shape, generator=g)).reshape(b, -1)
    sy = torch.rand(b, op.m, generator=g) * 0.3  # per-coordinate: both sides of s sigma' for every case
    coef = torch.tensor([0.8, 0.6, 0.45, 0.85])
    obs = op.observed
    t = dict(x=x, eps=eps, z=z, y=y, weights=op.weights, observed=obs, sigma_y=sy, coef=coef)
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in t.items()}


def _ref(t, op, eta, eta_b):
    return R.group_step(t["x"].cpu(), t["eps"].cpu(), t["y"].cpu(), t["weights"].cpu(),
                        None if t["observed"] is None else t["observed"].cpu(), t["sigma_y"].cpu(), t["coef"].cpu(),
                        t["z"].cpu(), None, 0, op.group_shape, eta, eta_b, want_x0=True)


def _rel(a, b):
    return ((a.cpu() - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("name", ["denoise", "inpaint", "inpaint_wide", "sr2", "sr3", "sr4", "sr9", "sr2_masked",
                                  "color"])
@pytest.mark.parametrize("b", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided_eps"])
def test_matches_reference(backend, device, name, b, dtype, layout):
    op = _ops(b)[name]
    t = _case(op, b, dtype, layout, device)
    group = get(backend).group_step
    out, x0 = group(t["x"], t["eps"], t["y"], t["weights"], t["observed"], t["sigma_y"], t["coef"], t["z"], None, 0,
                    op.group_shape, 0.85, 0.7, want_x0=True)
    want, want_x0 = _ref(t, op, 0.85, 0.7)
    assert out.dtype == torch.float32 and out.shape == want.shape
    assert _rel(out, want) <= 1e-5 and _rel(x0, want_x0) <= 1e-5
    if layout == "channels_last":
        assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("name", ["denoise", "inpaint_wide", "sr3", "sr9", "sr2_masked", "color"])
@pytest.mark.parametrize("dtype,layout", [(torch.float32, "contiguous"), (torch.bfloat16, "channels_last"),
                                          (torch.float16, "strided_eps")])
def test_clip_x0_matches_reference(backend, device, name, dtype, layout):
    op = _ops(2)[name]
    t = _case(op, 2, dtype, layout, device)
    group = get(backend).group_step
    args = (t["x"], t["eps"], t["y"], t["weights"], t["observed"], t["sigma_y"], t["coef"], t["z"], None, 0,
            op.group_shape, 0.85, 0.7)
    out, x0 = group(*args, want_x0=True, clip_x0=True)
    want, want_x0 = R.group_step(*[a.cpu() if isinstance(a, torch.Tensor) else a for a in args], want_x0=True,
                                 clip_x0=True)
    assert _rel(out, want) <= 1e-5 and _rel(x0, want_x0) <= 1e-5
    assert x0.abs().max() <= 1 and not torch.allclose(out, group(*args)[0])  # the clamp bit and changed the step


def test_reference_clip_is_the_pixel_space_clamp():
    """Clipping inside the step equals clamping x0 in pixel space, solving for eps, and stepping without it: the
    one-pass form and the explicit SVD step alike."""
    for name, op in _ops(2).items():
        t = _case(op, 2, torch.float32, "contiguous", "cpu")
        sqa, sq1m = t["coef"][0], t["coef"][1]
        x0 = ((t["x"] - sq1m * t["eps"]) / sqa).clamp(-1, 1)
        eps = (t["x"] - sqa * x0) / sq1m
        rest = (t["y"], t["weights"], t["observed"], t["sigma_y"], t["coef"], t["z"], None, 0, op.group_shape, 0.85,
                0.7)
        clipped = R.group_step(t["x"], t["eps"], *rest, want_x0=True, clip_x0=True)
        direct = R.group_step(t["x"], eps, *rest, want_x0=True)
        assert torch.allclose(clipped[0], direct[0], atol=1e-5) and torch.allclose(clipped[1], x0, atol=1e-6), name
        s = op.singulars().reshape(-1, op.m)
        spec, _ = R.spectral_step(op.Vt(t["x"]), op.Vt(eps), op.Vt(t["z"]), t["y"], s, t["sigma_y"], t["coef"], 0.85,
                                  0.7)
        assert torch.allclose(op.V(spec).view_as(direct[0]), clipped[0], atol=2e-5), name


def test_reference_group_step_is_the_svd_step():
    """The spec's claim: the one-pass form equals the explicit-SVD step when zbar = V^T z."""
    for name, op in _ops(2).items():
        t = _case(op, 2, torch.float32, "contiguous", "cpu")
        out, _ = _ref(t, op, 0.85, 0.7)
        s = op.singulars().reshape(-1, op.m)
        spec, _ = R.spectral_step(op.Vt(t["x"]), op.Vt(t["eps"]), op.Vt(t["z"]), t["y"], s, t["sigma_y"], t["coef"],
                                  0.85, 0.7)
        assert torch.allclose(op.V(spec).view_as(out), out, atol=2e-6), name


def _raw_noise(backend, device, seeds, offset, shape=(3, 16, 20)):
    """The kernel's in-kernel noise itself: every pixel unobserved (case 3), x = eps = 0, coef [1, 0, 1, 1],
    eta = 1, so x_{t'} = z."""
    b = seeds.shape[0]
    group = get(backend).group_step
    zeros = torch.zeros(b, *shape, device=device)
    obs = torch.zeros(1, shape[0] * shape[1] * shape[2], device=device)
    y = torch.zeros(b, obs.shape[1], device=device)
    coef = torch.tensor([1.0, 0.0, 1.0, 1.0], device=device)
    return group(zeros, zeros, y, torch.ones(1, device=device), obs, torch.zeros(1, 1, device=device), coef, None,
                 seeds.to(device), offset, (1, 1, 1), 1.0, 1.0)[0].cpu()


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_philox_noise_is_the_reference_stream(backend, device):
    seeds = torch.tensor([0, 7, 2**40 + 3])
    for offset in (0, 5, 2**32):
        z = _raw_noise(backend, device, seeds, offset)
        want = R.philox_normal(seeds, offset, z[0].numel()).view_as(z)
        assert torch.allclose(z, want, atol=1e-5)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_philox_noise_statistics_and_batch_invariance(backend, device):
    seeds = torch.tensor([11, 12, 13, 14])
    shape = (3, 32, 64) if not INTERPRET else (3, 16, 20)
    z = _raw_noise(backend, device, seeds, 3, shape).reshape(4, -1)
    n = z.numel()
    assert abs(z.mean().item()) < 5 / n**0.5 and abs(z.var().item() - 1) < 5 * (2 / n) ** 0.5
    corr = torch.corrcoef(z)  # independent between samples
    assert (corr - torch.eye(4)).abs().max() < 5 / z.shape[1] ** 0.5
    z_next = _raw_noise(backend, device, seeds, 4, shape).reshape(4, -1)  # and between steps
    assert abs(torch.corrcoef(torch.stack([z[0], z_next[0]]))[0, 1]) < 5 / z.shape[1] ** 0.5
    alone = _raw_noise(backend, device, seeds[2:3], 3, shape).reshape(1, -1)
    assert torch.equal(alone[0], z[2])  # a sample's noise does not depend on its batch


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_opcheck(backend, device):
    op = _ops(2)["sr2_masked"]
    t = _case(op, 2, torch.float32, "strided_eps", device)
    args = (t["x"], t["eps"], t["y"], t["weights"], t["observed"], t["sigma_y"], t["coef"], t["z"], None, 0,
            list(op.group_shape), 0.85, 0.7, True)
    if backend == "triton":
        import ddrm_fast.triton.group_step  # noqa: F401  (registers the op)
    fn = torch.ops.ddrm_fast.group_step if backend != "triton" else torch.ops.ddrm_fast_triton.group_step
    torch.library.opcheck(fn.default, args)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_compile_fullgraph(backend, device):
    """A whole step (x0 through x_{t'}) compiles without graph breaks; CPU uses aot_eager (no C++ codegen in CI)."""
    op = _ops(1)["sr2"]
    t = _case(op, 1, torch.float32, "contiguous", device)
    group = get(backend).group_step

    def step(x, eps, z):
        return group(x, eps, t["y"], t["weights"], None, t["sigma_y"], t["coef"], z, None, 0, op.group_shape, 0.85,
                     0.7)[0] * 1.0

    compiled = torch.compile(step, fullgraph=True, backend="inductor" if device == "cuda" else "aot_eager")
    assert torch.allclose(compiled(t["x"], t["eps"], t["z"]), step(t["x"], t["eps"], t["z"]), atol=1e-6)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_a_meta_tensor_among_real_ones_is_a_device_error(backend, device):
    op = _ops(1)["sr2"]
    t = _case(op, 1, torch.float32, "contiguous", device)
    group = get(backend).group_step
    with pytest.raises(RuntimeError, match=f"eps must be on {device}"):
        group(t["x"], t["eps"].to("meta"), t["y"], t["weights"], None, t["sigma_y"], t["coef"], t["z"], None, 0,
              op.group_shape, 0.85, 0.7)


@pytest.mark.parametrize("change,match", [
    (dict(x=torch.zeros(1, 3, 18, 30, dtype=torch.float64)), "x must be float32, float16 or bfloat16"),
    (dict(eps=torch.zeros(1, 3, 18, 28)), "eps must have the shape of x"),
    (dict(y=torch.zeros(1, 404)), "y must be contiguous float32 with 405 measurements"),
    (dict(weights=torch.ones(3)), "weights must be"),
    (dict(sigma_y=torch.zeros(2, 1)), "sigma_y must be"),
    (dict(coef=torch.zeros(3)), "coef must be"),
    (dict(z=None), "seeds must be"),
    (dict(group_shape=(1, 4, 4)), "group_shape"),
])
def test_cpu_checks_name_the_argument(change, match):
    from ddrm_fast import ops

    if not ops.has_cpu():
        pytest.skip("no compiled extension")
    op = O.SuperRes(2, (3, 18, 30))
    t = dict(x=torch.zeros(1, 3, 18, 30), eps=torch.zeros(1, 3, 18, 30), y=torch.zeros(1, 405),
             weights=op.weights, observed=None, sigma_y=torch.zeros(1, 1), coef=torch.ones(4),
             z=torch.zeros(1, 3, 18, 30), group_shape=op.group_shape)
    t.update(change)
    with pytest.raises((RuntimeError, ValueError), match=match):
        ops.group_step(t["x"], t["eps"], t["y"], t["weights"], t["observed"], t["sigma_y"], t["coef"], t["z"], None,
                       0, t["group_shape"], 0.85, 1.0)
