"""ddrm_sample: argument checks, per-sample streams, per-sample and per-coordinate noise levels."""
import subprocess
import sys

import pytest
import torch

from ddrm_fast import ddrm_sample, ops, operators as O
from ddrm_fast.models import GaussianPriorEps

MODEL = GaussianPriorEps(std=0.5)
BACKENDS = ["reference"] + (["cpu"] if ops.has_cpu() else [])  # every backend this process can run


def _gens(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def _problem(b=3, shape=(3, 8, 12)):
    x = 0.5 * torch.randn(b, *shape, generator=torch.Generator().manual_seed(7))
    op = O.SuperRes(2, shape)
    return x, op, op.H(x)


def test_restoration_agrees_with_y():
    x, op, y = _problem(b=8, shape=(3, 16, 16))
    out = ddrm_sample(MODEL, y, op, 0.0, steps=20, generator=torch.Generator().manual_seed(0))
    # the measured part is pulled onto y (the last step returns the model's x0, so only approximately)
    assert torch.allclose(op.H(out), y, atol=0.03)


def test_per_sample_generators_make_results_independent_of_the_batch():
    x, op, y = _problem(b=3)
    full = ddrm_sample(MODEL, y, op, 0.05, generator=_gens([10, 11, 12]))
    alone = ddrm_sample(MODEL, y[1:2], op, 0.05, generator=_gens([11]))
    assert torch.allclose(full[1:2], alone, atol=1e-6)
    shuffled = ddrm_sample(MODEL, y[[2, 1]], op, 0.05, generator=_gens([12, 11]))
    assert torch.allclose(full[[2, 1]], shuffled, atol=1e-6)


def test_per_sample_masks_and_sigmas_equal_separate_runs():
    x = 0.5 * torch.randn(2, 3, 8, 8)
    mask = (torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    op = O.Inpaint(mask, channels=3)
    y = op.H(x)
    sig = torch.tensor([0.0, 0.2])
    both = ddrm_sample(MODEL, y, op, sig, generator=_gens([1, 2]))
    for i in range(2):
        one = ddrm_sample(MODEL, y[i:i + 1], O.Inpaint(mask[i:i + 1], channels=3), float(sig[i]),
                          generator=_gens([i + 1]))
        assert torch.allclose(both[i:i + 1], one, atol=1e-6)


def test_per_coordinate_sigma_acts_per_coordinate():
    """Denoising with an elementwise prior is separable per pixel: with the same noise stream, each region of a
    two-level noise map restores exactly as a run with that region's scalar level."""
    x = 0.5 * torch.randn(2, 1, 6, 8)
    op = O.Denoise((1, 6, 8))
    y = x + 0.1 * torch.randn_like(x)
    sigma_map = torch.full((1, 1, 6, 8), 0.1)
    sigma_map[..., 4:] = 0.5
    mixed = ddrm_sample(MODEL, y, op, sigma_map, generator=torch.Generator().manual_seed(3))
    lo = ddrm_sample(MODEL, y, op, 0.1, generator=torch.Generator().manual_seed(3))
    hi = ddrm_sample(MODEL, y, op, 0.5, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(mixed[..., :4], lo[..., :4], atol=1e-6)
    assert torch.allclose(mixed[..., 4:], hi[..., 4:], atol=1e-6)
    assert not torch.allclose(lo[..., 4:], hi[..., 4:])


def test_callback_sees_every_step_and_x_T_fixes_the_start():
    x, op, y = _problem(b=1)
    seen = []
    x_T = torch.randn(1, 3, 8, 12)
    a = ddrm_sample(MODEL, y, op, 0.0, steps=5, eta=0.0, eta_b=1.0, x_T=x_T, callback=seen.append,
                    generator=torch.Generator().manual_seed(0))
    b = ddrm_sample(MODEL, y, op, 0.0, steps=5, eta=0.0, eta_b=1.0, x_T=x_T, generator=torch.Generator().manual_seed(0))
    c = ddrm_sample(MODEL, y, op, 0.0, steps=5, eta=0.0, eta_b=1.0, x_T=-x_T, generator=torch.Generator().manual_seed(0))
    assert [d["t"] for d in seen] == [800, 600, 400, 200, 0] and seen[-1]["t_next"] == -1
    assert torch.equal(seen[-1]["x"], a) and seen[-1]["x0"].shape == a.shape
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_model_with_learned_variance_channels():
    x, op, y = _problem(b=1)
    twice = lambda x, t: torch.cat([MODEL(x, t), torch.ones_like(x)], 1)  # noqa: E731
    a = ddrm_sample(MODEL, y, op, 0.1, generator=torch.Generator().manual_seed(0))
    b = ddrm_sample(twice, y, op, 0.1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


@pytest.mark.parametrize("kwargs,match", [
    (dict(y=torch.zeros(1, 3, 8, 12)), "y must have shape"),
    (dict(y=torch.zeros(1, 3, 4)), "y must have shape"),
    (dict(y=torch.full((1, 3, 4, 6), float("nan"))), "y contains NaN or Inf"),
    (dict(y=torch.full((1, 3, 4, 6), float("inf"))), "y contains NaN or Inf"),
    (dict(sigma_y=-0.1), "sigma_y must be >= 0"),
    (dict(sigma_y=torch.tensor([0.1, -0.1])), "sigma_y must be >= 0"),
    (dict(sigma_y=float("nan")), "sigma_y must be finite"),
    (dict(sigma_y=torch.zeros(5, 5)), "sigma_y of shape"),
    (dict(sigma_y="0.1"), "sigma_y must be a float"),
    (dict(eta=1.5), "eta must lie in"),
    (dict(eta_b=-1.0), "eta_b must lie in"),
    (dict(steps=0), "steps must be"),
    (dict(noise="gaussian"), "noise must be one of"),
    (dict(backend="tpu"), "backend must be one of"),
    (dict(x_T=torch.zeros(1, 3, 8, 8)), "x_T must have shape"),
    (dict(operator="sr4"), "operator must be"),
    (dict(schedule=torch.tensor([0.5, 2.0])), "schedule must be"),
    (dict(schedule=torch.tensor([1, 2])), "schedule must be"),
    (dict(x_T=torch.full((1, 3, 8, 12), float("nan"))), "x_T contains NaN or Inf"),
    (dict(x_T=torch.zeros(1, 3, 8, 12, dtype=torch.complex64)), "x_T must be real"),
    (dict(y=torch.zeros(0, 3, 4, 6)), r"y has an empty batch \(B = 0\)"),
    (dict(y=torch.zeros(1, 3, 4, 6, dtype=torch.complex64)), "y must be real"),
    (dict(sigma_y=torch.tensor(0.1 + 0.2j)), "sigma_y must be real numbers"),
    (dict(sigma_y=0.1 + 0.2j), "sigma_y must be a float or a tensor, got complex"),
    (dict(generator=5), "generator must be None, a torch.Generator or a list of one per sample, got int"),
    (dict(generator=[1, 2]), "generator must be None, a torch.Generator or a list of one per sample, got list"),
    (dict(generator=[torch.Generator()] * 2), "got 2 per-sample generators for a batch of 1"),
    (dict(y=torch.zeros(1, 3, 4, 6, device="meta")), "y is on the meta device"),
    (dict(x_T=torch.zeros(1, 3, 8, 12, device="meta")), "x_T is on the meta device"),
    (dict(sigma_y=torch.zeros(1, device="meta")), "sigma_y is on the meta device"),
])
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_arguments_raise_before_any_work(kwargs, match, backend):
    op = O.SuperRes(2, (3, 8, 12))
    calls = []

    def model(x, t):
        calls.append(1)
        return MODEL(x, t)

    args = dict(y=torch.zeros(1, 3, 4, 6), operator=op, sigma_y=0.1, backend=backend)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ddrm_sample(model, args.pop("y"), args.pop("operator"), args.pop("sigma_y"), **args)
    assert not calls


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("model,match", [
    (lambda x, t: "eps", "model must return a tensor, got str"),
    (lambda x, t: torch.zeros(x.shape, dtype=torch.int32), "model returned torch.int32; expected a real floating"),
    (lambda x, t: torch.zeros(x.shape[0], 3, 4, 4), r"model returned shape \(1, 3, 4, 4\) for x_t of shape"),
    (lambda x, t: torch.zeros(x.shape[0], 5, *x.shape[2:]), "model returned 5 channels; expected 3"),
])
def test_a_model_returning_the_wrong_thing_is_named(model, match, backend):
    op = O.SuperRes(2, (3, 8, 12))
    with pytest.raises(ValueError, match=match):
        ddrm_sample(model, torch.zeros(1, 3, 4, 6), op, 0.1, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("make", [lambda: O.SuperRes(2, (3, 8, 12)), lambda: O.Blur([0.25, 0.5, 0.25], (3, 8, 12))])
def test_a_model_output_that_goes_non_finite_is_named_at_the_end(make, bad, backend):
    # one step's eps of NaN or Inf (the last: nothing after it can hide it) must not come back as an image of NaNs
    op, calls = make(), []

    def model(x, t):
        calls.append(1)
        return MODEL(x, t) * (bad if len(calls) == 2 else 1.0)

    y = op.H(0.5 * torch.randn(1, 3, 8, 12))
    with pytest.raises(ValueError, match=r"model: its output \(eps\) was NaN or Inf"):
        ddrm_sample(model, y, op, 0.1, steps=2, backend=backend)
    assert len(calls) == 2  # the loop ran to its end without looking
    assert torch.isfinite(ddrm_sample(MODEL, y, op, 0.1, steps=2, backend=backend)).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make", [lambda: O.SuperRes(2, (3, 8, 12)), lambda: O.Blur([0.25, 0.5, 0.25], (3, 8, 12))])
def test_a_float64_model_gives_the_float32_result_on_every_backend(make, backend):
    op = make()
    y = op.H(0.5 * torch.randn(2, 3, 8, 12, generator=torch.Generator().manual_seed(0)))
    run = lambda m, be: ddrm_sample(m, y, op, 0.05, steps=5, backend=be,  # noqa: E731
                                    generator=torch.Generator().manual_seed(1))
    wide = lambda x, t: MODEL(x.double(), t).double()  # noqa: E731
    torch.testing.assert_close(run(wide, backend), run(MODEL, "reference"), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sampling_never_records_autograd_history(backend):
    """Grad mode on, a model with trainable parameters: no graph is kept, the output needs no grad."""
    from ddrm_fast.models import ADMUNet

    torch.manual_seed(0)
    model = ADMUNet(dict(model_channels=32, num_res_blocks=1, channel_mult=(1, 2), attention_ds=()))
    assert model.training and all(p.requires_grad for p in model.parameters())
    op = O.SuperRes(2, (3, 8, 8))
    seen = []
    with torch.enable_grad():
        out = ddrm_sample(model, torch.zeros(1, 3, 4, 4), op, 0.1, steps=4, backend=backend,
                          callback=lambda d: seen.append(torch.is_grad_enabled()))
    assert not out.requires_grad and out.grad_fn is None and seen == [False] * 4
    assert torch.is_grad_enabled()  # the caller's mode is restored


def test_per_coordinate_sigma_needs_identity_U():
    op = O.Blur([0.25, 0.5, 0.25], (1, 6, 6))
    with pytest.raises(ValueError, match="per-coordinate noise map needs an operator whose U is the identity"):
        ddrm_sample(MODEL, torch.zeros(1, 1, 6, 6), op, torch.full((1, 1, 6, 6), 0.1))


def test_compat_noise_needs_an_equivalent_operator():
    op = O.SuperRes(2, (3, 8, 12))  # not square: the original has no such operator
    with pytest.raises(ValueError, match="no equivalent in the original"):
        ddrm_sample(MODEL, torch.zeros(1, 3, 4, 6), op, 0.1, noise="compat")
    sq = O.SuperRes(2, (3, 8, 8))
    with pytest.raises(ValueError, match="scalar sigma_y"):
        ddrm_sample(MODEL, torch.zeros(2, 3, 4, 4), sq, torch.tensor([0.1, 0.2]), noise="compat")


def _dense_ddrm(H, y, sigma_y, zs, model, steps, eta, eta_b, threshold=1e-3):
    """DDRM as the spec writes it, over the explicit SVD of the (m, N) matrix H, in float64: an oracle that shares
    nothing with the package but the model. ``zs`` are the image-space noises (initial, then one per step)."""
    U, S, Vh = torch.linalg.svd(H.double(), full_matrices=True)
    s = torch.where(S < threshold, torch.zeros_like(S), S)
    V, m, b = Vh.t(), s.numel(), y.shape[0]
    measured = s > 0
    ybar = torch.where(measured, (y.double().reshape(b, -1) @ U) / torch.where(measured, s, 1.0), 0.0)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = lambda t: torch.cumprod(1 - betas, 0)[t] if t >= 0 else torch.tensor(1.0, dtype=torch.float64)  # noqa
    sigma = lambda t: ((1 - abar(t)) / abar(t)).sqrt()  # noqa: E731
    seq = list(range(0, 1000, 1000 // steps))[::-1]
    z = zs[0].double().reshape(b, -1) @ V
    sT = sigma(seq[0])
    head = torch.where(measured & (s * sT > sigma_y),
                       (ybar + (sT**2 - sigma_y**2 / torch.where(measured, s, 1.0) ** 2).clamp_min(0).sqrt()
                        * z[:, :m]) / sT, z[:, :m])
    x = torch.cat([head, z[:, m:]], 1) @ V.t()
    for i, t in enumerate(seq):
        t_next = seq[i + 1] if i + 1 < len(seq) else -1
        eps = model(x.float().reshape(zs[0].shape), torch.full((b,), float(t))).double().reshape(b, -1)
        x0 = (x - (1 - abar(t)).sqrt() * eps) / abar(t).sqrt()
        x0b, eb, zb = x0 @ V, eps @ V, zs[i + 1].double().reshape(b, -1) @ V
        sn = sigma(t_next)
        new = x0b + (1 - eta**2) ** 0.5 * sn * eb + eta * sn * zb  # case 3
        sm = torch.where(measured, s, 1.0)
        case1 = (eta_b * ybar + (1 - eta_b) * x0b[:, :m]
                 + (sn**2 - eta_b**2 * sigma_y**2 / sm**2).clamp_min(0).sqrt() * zb[:, :m])
        case2 = x0b[:, :m] + (1 - eta**2) ** 0.5 * sn * (ybar - x0b[:, :m]) * s / sigma_y + eta * sn * zb[:, :m]
        head = torch.where(measured & (s * sn > sigma_y), case1,
                           torch.where(measured & (s * sn < sigma_y), case2, new[:, :m]))
        x = abar(t_next).sqrt() * torch.cat([head, new[:, m:]], 1) @ V.t()
    return x.reshape(zs[0].shape)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("make", [
    lambda s: O.Blur([1 / 9] * 9, s), lambda s: O.SRBicubic(2, s), lambda s: O.WalshHadamardCS(4, s),
    lambda s: O.Colorize(s), lambda s: O.SuperRes(2, s),
    lambda s: O.Dense(torch.randn(40, 3 * 8 * 8, generator=torch.Generator().manual_seed(5)), s),
    # a non-separable, non-symmetric kernel: complex transfer function, the real Fourier basis
    lambda s: O.Convolution(torch.rand(3, 4, generator=torch.Generator().manual_seed(6)), s),
    lambda s: O.Kronecker([[0.299, 0.587, 0.114]], O.resize_matrix(8, 4, "bicubic"), O.resize_matrix(8, 3, "lanczos3")),
])
def test_every_operator_equals_ddrm_over_its_explicit_svd(make, backend):
    """Each operator's structured SVD against DDRM written out over torch.linalg.svd of its matrix, given the same
    image-space noise: the result does not depend on which singular basis is used."""
    from ddrm_fast import ops

    if backend == "cpu" and not ops.has_cpu():
        pytest.skip("no compiled extension")
    op = make((3, 8, 8))
    x = 0.5 * torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    y = op.H(x) + 0.1 * torch.randn(2, *op.y_shape, generator=torch.Generator().manual_seed(2))
    steps, grouped = 5, isinstance(op, O.GroupOperator)
    out = ddrm_sample(MODEL, y, op, 0.1, steps=steps, eta=0.85, eta_b=0.9,
                      generator=torch.Generator().manual_seed(0), backend=backend)
    # the sampler's draws, in their order: image layout for group operators, spectral (then V) for the others
    g = torch.Generator().manual_seed(0)
    draws = [torch.randn((2, 3, 8, 8) if grouped else (2, op.n), generator=g) for _ in range(steps + 1)]
    zs = [d if grouped else op.V(d).reshape(2, 3, 8, 8) for d in draws]
    matrix = op.H(torch.eye(op.n).reshape(op.n, 3, 8, 8)).reshape(op.n, -1).t()  # (m, N), column j = H e_j
    want = _dense_ddrm(matrix, y, 0.1, zs, MODEL, steps, 0.85, 0.9)
    torch.testing.assert_close(out.double(), want, rtol=1e-4, atol=2e-4)


def test_network_options_keep_the_result():
    # autocast, channels_last and torch.compile change how the model runs, not what DDRM computes
    from ddrm_fast.models import ADMUNet

    torch.manual_seed(0)
    model = ADMUNet(dict(model_channels=32, num_res_blocks=1, channel_mult=(1, 2), attention_ds=(2,))).eval()
    with torch.no_grad():
        for p in model.out.parameters():
            p.normal_(0, 0.05)
    op = O.SuperRes(2, (3, 16, 16))
    y = op.H(torch.rand(2, 3, 16, 16) * 2 - 1)

    def run(**kw):
        with torch.no_grad():
            return ddrm_sample(model, y, op, 0.1, steps=3, noise="philox", generator=torch.Generator().manual_seed(0),
                               backend="reference", **kw)

    base = run()
    torch.testing.assert_close(run(channels_last=True), base, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(run(compile=True), base, rtol=1e-4, atol=1e-4)
    low = run(model_dtype=torch.bfloat16)
    assert 0 < (low - base).abs().max() < 0.1
    seen = []

    class Probe(torch.nn.Module):  # records the layout the model is handed
        def forward(self, x, t):
            seen.append(x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())
            return model(x, t)

    for flag in (True, False):
        seen.clear()
        ddrm_sample(Probe(), y, op, 0.1, steps=3, channels_last=flag)
        assert len(seen) == 4 and all(v == flag for v in seen)  # steps=3 walks range(0, 1000, 333): 4 calls
    with pytest.raises(ValueError, match="model_dtype"):
        run(model_dtype=torch.int8)
    with pytest.raises(ValueError, match="nn.Module"):
        ddrm_sample(lambda x, t: x, y, op, 0.1, steps=2, compile=True)
    with pytest.raises(ValueError, match="compile must be"):
        run(compile="fastest")


def test_compile_modes_with_graphs(monkeypatch):
    # the sampler captures the loop itself: compile modes that capture graphs of their own are refused with it
    from ddrm_fast import sampler

    monkeypatch.setattr(sampler.GRAPHS, "make", _Rerun)
    op = O.SuperRes(2, (3, 8, 8))
    y = op.H(torch.rand(1, 3, 8, 8))
    for mode in ("reduce-overhead", "max-autotune"):
        with pytest.raises(ValueError, match=f"compile='{mode}' captures CUDA graphs"):
            ddrm_sample(GaussianPriorEps(), y, op, 0.1, steps=2, compile=mode, cuda_graph=True)
    assert sampler.compile_mode("max-autotune-no-cudagraphs", True) == "max-autotune-no-cudagraphs"
    assert sampler.compile_mode(True, True) == "default" and sampler.compile_mode(False, True) is None


class _Rerun:
    """A stand-in for a CUDA graph on the CPU: 'replay' reruns the captured function into the same output tensor,
    reading whatever the static buffers hold, exactly what a replayed graph would read."""

    def __init__(self, device):
        self.fn = self.out = None

    def capture(self, fn):
        self.fn, self.out = fn, fn()
        return self.out

    def replay(self):
        self.out.copy_(self.fn())


@pytest.mark.parametrize("noise,op", [("torch", "inp"), ("philox", "inp"), ("torch", "blur"), ("compat", "sr")])
def test_graph_replay_reads_each_calls_inputs(monkeypatch, noise, op):
    from ddrm_fast import sampler

    monkeypatch.setattr(sampler.GRAPHS, "make", _Rerun)
    sampler.clear_graphs()
    torch.manual_seed(0)
    if op == "inp":
        operator = O.Inpaint((torch.rand(2, 1, 8, 8) > 0.5).float(), channels=3)
    elif op == "blur":
        operator = O.Blur([0.25, 0.5, 0.25], (3, 8, 8))
    else:
        operator = O.SuperRes(2, (3, 8, 8))
    model = GaussianPriorEps(std=0.5)
    ys = [operator.H(torch.rand(2, 3, 8, 8) * 2 - 1) for _ in range(3)]
    kept = [y.clone() for y in ys]
    sigmas = [torch.tensor([0.05, 0.2]), torch.tensor([0.3, 0.0]), torch.tensor([0.1, 0.1])]
    if noise == "compat":
        sigmas = [0.1, 0.1, 0.1]

    def run(i, **kw):
        return ddrm_sample(model, ys[i], operator, sigmas[i], steps=4, noise=noise, backend="auto",
                           generator=torch.Generator().manual_seed(10 + i), **kw)

    for i in range(3):
        torch.testing.assert_close(run(i, cuda_graph=True), run(i), rtol=1e-5, atol=1e-5)
    assert len(sampler.GRAPHS.entries) == 1  # one capture, replayed with new inputs
    for y, k in zip(ys, kept):
        assert torch.equal(y, k)  # the caller's tensors are never used as graph buffers
    sampler.clear_graphs()


@pytest.mark.parametrize("kind,captures", [("inp", 1), ("sr", 1), ("blur", 3)])
def test_graph_replays_for_a_new_operator_each_call(monkeypatch, kind, captures):
    # a folder job builds each batch's operator anew (its own masks): fused group steps read the operator's
    # weights and mask from graph buffers, so one capture serves them all; explicit-V operators capture per object
    from ddrm_fast import sampler

    monkeypatch.setattr(sampler.GRAPHS, "make", _Rerun)
    sampler.clear_graphs()
    torch.manual_seed(0)
    model = GaussianPriorEps(std=0.5)
    for i in range(3):
        operator = {"inp": lambda: O.Inpaint((torch.rand(2, 1, 8, 8) > 0.5).float(), channels=3),
                    "sr": lambda: O.SuperRes(2, (3, 8, 8), observed=(torch.rand(2, 3, 4, 4) > 0.3).float()),
                    "blur": lambda: O.Blur([0.25, 0.5, 0.25], (3, 8, 8))}[kind]()
        y = operator.H(torch.rand(2, 3, 8, 8) * 2 - 1)

        def run(**kw):
            return ddrm_sample(model, y, operator, 0.1, steps=4, noise="philox", backend="auto",
                               generator=torch.Generator().manual_seed(i), **kw)

        torch.testing.assert_close(run(cuda_graph=True), run(), rtol=1e-5, atol=1e-5)
    assert len(sampler.GRAPHS.entries) == captures
    sampler.clear_graphs()


def test_graph_needs_cuda_and_no_callback():
    op = O.Denoise((3, 4, 4))
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        ddrm_sample(GaussianPriorEps(), torch.zeros(1, 3, 4, 4), op, 0.1, steps=2, cuda_graph=True)


def test_compat_noise_needs_no_import_of_the_drop_in():
    # the sampler loads the original's draws itself on first use: importing ddrm_fast does not import compat
    code = ("import sys, torch\nimport ddrm_fast\nfrom ddrm_fast import operators as O\n"
            "assert 'ddrm_fast.compat' not in sys.modules\n"
            "from ddrm_fast.models import GaussianPriorEps\n"
            "op = O.SuperRes(2, (3, 8, 8))\n"
            "x = ddrm_fast.ddrm_sample(GaussianPriorEps(0.5), torch.zeros(1, 3, 4, 4), op, 0.1, steps=3,"
            " noise='compat', generator=torch.Generator().manual_seed(0), backend='reference')\n"
            "assert 'ddrm_fast.compat' in sys.modules and torch.isfinite(x).all()\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
