"""ddrm_sample: argument checks, per-sample streams, per-sample and per-coordinate noise levels."""
import pytest
import torch

from ddrm_fast import ddrm_sample, operators as O
from ddrm_fast.models import GaussianPriorEps

MODEL = GaussianPriorEps(std=0.5)


def _gens(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def _problem(b=3, shape=(3, 8, 12)):
    x = 0.5 * torch.randn(b, *shape, generator=torch.Generator().manual_seed(7))
    op = O.SuperRes(2, shape)
    return x, op, op.H(x)


def test_restoration_agrees_with_y():
    x, op, y = _problem(b=8, shape=(3, 16, 16))
    out = ddrm_sample(MODEL, y, op, 0.0, steps=20, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.isfinite(out).all()
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
])
def test_bad_arguments_raise_before_any_work(kwargs, match):
    op = O.SuperRes(2, (3, 8, 12))
    calls = []

    def model(x, t):
        calls.append(1)
        return MODEL(x, t)

    args = dict(y=torch.zeros(1, 3, 4, 6), operator=op, sigma_y=0.1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ddrm_sample(model, args.pop("y"), args.pop("operator"), args.pop("sigma_y"), **args)
    assert not calls


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


@pytest.mark.parametrize("make", [
    lambda s: O.Blur([1 / 9] * 9, s), lambda s: O.SRBicubic(2, s), lambda s: O.WalshHadamardCS(4, s),
    lambda s: O.Colorize(s), lambda s: O.Dense(torch.randn(40, 3 * 8 * 8), s),
])
def test_every_operator_samples(make):
    op = make((3, 8, 8))
    x = 0.5 * torch.randn(2, 3, 8, 8)
    out = ddrm_sample(MODEL, op.H(x), op, 0.05, steps=10, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.isfinite(out).all()


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

    monkeypatch.setattr(sampler._GRAPHS, "make", _Rerun)
    op = O.SuperRes(2, (3, 8, 8))
    y = op.H(torch.rand(1, 3, 8, 8))
    for mode in ("reduce-overhead", "max-autotune"):
        with pytest.raises(ValueError, match=f"compile='{mode}' captures CUDA graphs"):
            ddrm_sample(GaussianPriorEps(), y, op, 0.1, steps=2, compile=mode, cuda_graph=True)
    assert sampler._compile_mode("max-autotune-no-cudagraphs", True) == "max-autotune-no-cudagraphs"
    assert sampler._compile_mode(True, True) == "default" and sampler._compile_mode(False, True) is None


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

    monkeypatch.setattr(sampler._GRAPHS, "make", _Rerun)
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
    assert len(sampler._GRAPHS.entries) == 1  # one capture, replayed with new inputs
    for y, k in zip(ys, kept):
        assert torch.equal(y, k)  # the caller's tensors are never used as graph buffers
    sampler.clear_graphs()


@pytest.mark.parametrize("kind,captures", [("inp", 1), ("sr", 1), ("blur", 3)])
def test_graph_replays_for_a_new_operator_each_call(monkeypatch, kind, captures):
    # a folder job builds each batch's operator anew (its own masks): fused group steps read the operator's
    # weights and mask from graph buffers, so one capture serves them all; explicit-V operators capture per object
    from ddrm_fast import sampler

    monkeypatch.setattr(sampler._GRAPHS, "make", _Rerun)
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
    assert len(sampler._GRAPHS.entries) == captures
    sampler.clear_graphs()


def test_graph_needs_cuda_and_no_callback():
    op = O.Denoise((3, 4, 4))
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        ddrm_sample(GaussianPriorEps(), torch.zeros(1, 3, 4, 4), op, 0.1, steps=2, cuda_graph=True)
