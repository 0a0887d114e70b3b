"""Whole 20-step samples with every fused backend: equal to the reference backend for the same noise, and to the
original DDRM's golden vectors through noise='compat'."""
import json
import pathlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ddrm_fast import ddrm_sample, operators as O
from ddrm_fast.models import GaussianPriorEps
from ddrm_fast.schedules import linear_betas

from backends import BACKENDS, INTERPRET, needs_backend

pytestmark = needs_backend
DATA = pathlib.Path(__file__).parent.parent / "data"


def _golden_model():
    abar = (1 - linear_betas()).cumprod(0)

    def eps_model(x, t):
        a = abar.to(x.device)[t.long()].view(-1, 1, 1, 1)
        return (1 - a).sqrt() * x / (0.25 * a + 1 - a) + 0.02 * torch.tanh(3 * x) * (1 - a)

    return eps_model


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("name", ["deno_s0.1", "inp_s0.0", "inp_s0.1", "sr4_s0.1", "color_s0.0"])
def test_golden_through_compat_noise(backend, device, name):
    if INTERPRET and name in ("deno_s0.1", "inp_s0.0"):
        pytest.skip("the Triton interpreter is slow: one-pixel groups are covered by inp_s0.1")
    g = torch.load(DATA / "ddrm_reference.pt", weights_only=True)
    meta = next(c for c in json.loads((DATA / "ddrm_reference.json").read_text()) if c["name"] == name)
    y0, b = g[name + "/y0"], meta["batch"]
    if meta["deg"] == "deno":
        op, y = O.Denoise((3, 32, 32)), y0.view(b, 3, 32, 32)
    elif meta["deg"] == "inp":
        op = O.Inpaint.from_missing_indices(g[name + "/missing_indices"], (3, 32, 32))
        pm = torch.zeros(b, 3072)
        pm[:, op.observed[0].view(3, -1).t().reshape(-1).bool()] = y0
        y = pm.view(b, 1024, 3).permute(0, 2, 1).reshape(b, 3, 32, 32)
    elif meta["deg"] == "sr4":
        op, y = O.SuperRes(4, (3, 32, 32)), y0.view(b, 3, 8, 8)
    else:
        op, y = O.Colorize((3, 32, 32), weights=[0.3333, 0.3334, 0.3333]), y0.view(b, 1, 32, 32)
    # a CPU generator seeded as the original's global one yields its draws on any device (moved after drawing)
    gen = torch.Generator().manual_seed(meta["sampler_seed"])
    x_init = torch.randn(b, 3, 32, 32, generator=gen)
    assert torch.equal(x_init, g[name + "/x_init"])
    out = ddrm_sample(_golden_model(), y.to(device), op.to(device), meta["sigma_0"], steps=meta["steps"],
                      eta=meta["eta"], eta_b=meta["etaB"], noise="compat", x_T=x_init.to(device), backend=backend,
                      generator=gen)
    assert (out.cpu() - g[name + "/x_final"]).abs().max() <= 1e-3


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("noise", ["torch", "philox"])
@pytest.mark.parametrize("kind", ["sr2", "color", "inpaint", "blur", "convolution", "kronecker"])
def test_whole_sample_equals_reference(backend, device, noise, kind):
    h, w = (6, 10) if INTERPRET else (18, 30)  # odd-sized where the operator allows (w/2 = 15, 5)
    op = {"sr2": lambda: O.SuperRes(2, (3, h, w)), "color": lambda: O.Colorize((3, h + 1, w + 1)),
          "inpaint": lambda: O.Inpaint((torch.rand(2, 1, h + 1, w + 1) > 0.5).float(), channels=3),
          "blur": lambda: O.Blur([0.2, 0.6, 0.2], (3, h + 1, w + 1)),
          "convolution": lambda: O.Convolution(torch.rand(3, 3, 5), (3, h + 1, w + 1)),
          "kronecker": lambda: O.Kronecker([[0.3, 0.6, 0.1]], O.resize_matrix(h, h // 2, "bilinear"),
                                           O.resize_matrix(w + 1, 4, "lanczos3"))}[kind]().to(device)
    x = 0.5 * torch.randn(2, *op.image_shape, device=device)
    y = op.H(x)
    model = GaussianPriorEps(std=0.5).to(device)
    sy = torch.tensor([0.02, 0.2], device=device)  # per sample: both sides of every case along the walk
    outs = [ddrm_sample(model, y, op, sy, noise=noise, backend=be, generator=[torch.Generator().manual_seed(s)
                                                                              for s in (1, 2)])
            for be in ("reference", backend)]
    assert ((outs[1] - outs[0]).abs().max() / outs[0].abs().max()).item() <= 1e-5


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_model_output(backend, device, dtype):
    """A model returning fp16/bf16 eps: the fused steps read it as is, the transforms upcast. Backends agree to the
    model's precision: a float32-rounding difference in x_t can flip one rounding of eps to half precision (a
    relative 2**-8 for bf16, 2**-11 for fp16), which the remaining steps carry on: a bound of 4 such flips (over
    40 seeds on the CPU the worst was 2.2)."""
    torch.manual_seed(0)
    bound = 4 * (2**-8 if dtype == torch.bfloat16 else 2**-11)
    for op in (O.SuperRes(2, (3, 6, 10)).to(device), O.Blur([0.25, 0.5, 0.25], (3, 7, 9)).to(device)):
        base = GaussianPriorEps(std=0.5).to(device)
        model = lambda x, t: base(x, t).to(dtype)  # noqa: E731
        y = op.H(0.5 * torch.randn(1, *op.image_shape, device=device))
        outs = [ddrm_sample(model, y, op, 0.05, steps=5, backend=be, generator=torch.Generator().manual_seed(0))
                for be in ("reference", backend)]
        assert outs[1].dtype == torch.float32
        assert ((outs[1] - outs[0]).abs().max() / outs[0].abs().max()).item() <= bound


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@pytest.mark.parametrize("backend", [b for b, d in BACKENDS if d == "cuda"] + ["reference"])
@pytest.mark.parametrize("noise", ["torch", "philox"])
def test_cuda_graph_replays_equal_eager(backend, noise):
    # a real ADM network (attention, scale-shift norm) captured with the fused step, replayed with new inputs
    from ddrm_fast import sampler
    from ddrm_fast.models import ADMUNet

    torch.manual_seed(0)
    model = ADMUNet(dict(model_channels=32, num_res_blocks=1, channel_mult=(1, 2), attention_ds=(2,),
                         out_channels=6, use_scale_shift_norm=True, resblock_updown=True)).cuda().eval()
    with torch.no_grad():
        model.out[-1].weight.normal_(0, 0.05)
    sampler.clear_graphs()
    for i in range(3):  # a new mask each call, as a folder job's batches have
        op = O.Inpaint((torch.rand(3, 1, 16, 16) > 0.5).float(), channels=3).to("cuda")
        y = op.H(torch.rand(3, 3, 16, 16, device="cuda") * 2 - 1)
        sigma = torch.rand(3, device="cuda") * 0.2
        kw = dict(steps=5, noise=noise, backend=backend, generator=torch.Generator().manual_seed(i))
        with torch.no_grad():
            eager = ddrm_sample(model, y, op, sigma, **kw)
            graphed = ddrm_sample(model, y, op, sigma, cuda_graph=True, **kw)
        torch.testing.assert_close(graphed, eager, rtol=1e-4, atol=1e-4)
    # fused group steps read the mask from graph buffers: one capture; the reference loop captures per operator
    assert len(sampler.GRAPHS.entries) == (3 if backend == "reference" else 1)
    sampler.clear_graphs()


# --- the loop never waits for the host ----------------------------------------------------------------------------
class _HostWaits(TorchDispatchMode):
    """Records, once armed, every op that makes the host wait for the device: a value read back (item, bool(...)),
    an output shape that depends on the data (nonzero, boolean-mask indexing), or a copy between host and device."""

    def __init__(self):
        super().__init__()
        self.armed, self.found = False, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.armed and _waits_for_host(func, args, kwargs):
            self.found.append(str(func))
        return func(*args, **kwargs)


def _waits_for_host(func, args, kwargs) -> bool:
    if torch.Tag.data_dependent_output in func.tags:
        return True
    if torch.Tag.dynamic_output_shape in func.tags:
        if func is torch.ops.aten.index.Tensor:  # integer gathers are fine; a boolean mask needs its count
            return any(i is not None and i.dtype == torch.bool for i in args[1])
        return True
    if func is torch.ops.aten._to_copy.default:
        src, dst = args[0], kwargs.get("device", args[0].device)
    elif func is torch.ops.aten.copy_.default:
        src, dst = args[1], args[0].device
    else:
        return False
    if src.device.type == dst.type:
        return False
    # only a queued copy from pinned host memory to the device leaves the host free
    return not (src.device.type == "cpu" and src.is_pinned() and kwargs.get("non_blocking", len(args) > 2 and args[2]))


def _loop_host_waits(model, *args, **kwargs):
    """The host waits of ddrm_sample's loop: from the first model call (set-up checks may read values) to the loop's
    end, where the sampler looks at the result once (``check_result``, after the loop, checked to run once)."""
    import importlib
    from unittest import mock

    mode, checks = _HostWaits(), []
    sampler_module = importlib.import_module("ddrm_fast.sampler.ddrm")
    real_check = sampler_module.check_result

    def armed_model(x, t):
        mode.armed = True
        return model(x, t)

    def disarmed_check(x):
        mode.armed = False
        checks.append(x.shape)
        return real_check(x)

    with mock.patch.object(sampler_module, "check_result", disarmed_check), mode:
        ddrm_sample(armed_model, *args, **kwargs)
    assert len(checks) == 1
    return mode.found


_SYNC_BACKENDS = ([] if INTERPRET else [("reference", "cpu")] + ([("reference", "cuda")] if torch.cuda.is_available()
                                                                   else [])) + BACKENDS


@pytest.mark.parametrize("backend,device", _SYNC_BACKENDS)
@pytest.mark.parametrize("noise", ["torch", "philox", "compat"])
@pytest.mark.parametrize("kind", ["sr2", "inpaint", "color", "blur"])
def test_loop_never_waits_for_host(backend, device, noise, kind):
    # per-sample masks and sigma_y: the inputs that would tempt a loop into boolean indexing or .item()
    op = {"sr2": lambda: O.SuperRes(2, (3, 8, 8)), "color": lambda: O.Colorize((3, 8, 8)),
          "inpaint": lambda: O.Inpaint((torch.rand(2, 1, 8, 8) > 0.5).float(), channels=3),
          "blur": lambda: O.Blur([0.2, 0.6, 0.2], (3, 8, 8))}[kind]().to(device)
    y = op.H(0.5 * torch.randn(2, 3, 8, 8, device=device))
    if noise == "compat":
        if kind in ("inpaint", "blur"):
            pytest.skip("noise='compat' needs an operator of the original code with one mask for the batch")
        sigma = 0.1
    else:
        sigma = torch.tensor([0.02, 0.2], device=device)
    gen = torch.Generator(device).manual_seed(0)  # noise drawn where the data is: no host-to-device copies
    found = _loop_host_waits(GaussianPriorEps(std=0.5).to(device), y, op, sigma, steps=4, noise=noise,
                             backend=backend, generator=gen)
    assert found == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="host-to-device noise needs a GPU")
@pytest.mark.parametrize("noise", ["torch", "compat"])
def test_cpu_generators_on_cuda_never_wait(noise):
    # CPU generators (the original's seeds, per-image streams) serve CUDA data through queued pinned copies
    op = O.SuperRes(2, (3, 8, 8)).to("cuda")
    y = op.H(0.5 * torch.randn(2, 3, 8, 8, device="cuda"))
    gens = torch.Generator().manual_seed(0) if noise == "compat" else [torch.Generator().manual_seed(s) for s in (1, 2)]
    found = _loop_host_waits(GaussianPriorEps(std=0.5).cuda(), y, op, 0.1, steps=4, noise=noise, backend="auto",
                             generator=gens)
    assert found == []


@pytest.mark.parametrize("backend,device", _SYNC_BACKENDS)
def test_adm_loop_never_waits_for_host(backend, device):
    # the network path too: timestep embedding, attention, bfloat16 autocast, channels_last, per-sample generators
    from ddrm_fast.models import ADMUNet

    torch.manual_seed(0)
    model = ADMUNet(dict(model_channels=32, num_res_blocks=1, channel_mult=(1, 2), attention_ds=(2,),
                         out_channels=6, use_scale_shift_norm=True)).to(device).eval()
    op = O.SuperRes(2, (3, 8, 8)).to(device)
    y = op.H(0.5 * torch.randn(2, 3, 8, 8, device=device))
    with torch.no_grad():
        found = _loop_host_waits(model, y, op, 0.05, steps=3, noise="philox", backend=backend,
                                 model_dtype=torch.bfloat16, channels_last=True,
                                 generator=[torch.Generator(device).manual_seed(s) for s in (1, 2)])
    assert found == []


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("kind", ["sr2", "inpaint"])
def test_fused_loop_memory_beyond_the_network(backend, device, kind):
    # the budget: the network's own activations plus at most three image-sized buffers per sample (x_t,
    # x_{t'}; inpainting adds its image-sized y). Counted as live tensor bytes, which any device has.
    from ddrm_fast.probes import LiveBytes

    b, shape = 4, (3, 16, 16)
    op = (O.SuperRes(2, shape) if kind == "sr2" else O.Inpaint((torch.rand(b, 1, 16, 16) > 0.5).float(),
                                                                 channels=3)).to(device)
    y = op.H(torch.randn(b, *shape, device=device))
    model = GaussianPriorEps(std=0.5).to(device)
    with LiveBytes() as net:
        model(torch.randn(b, *shape, device=device), torch.full((b,), 500.0, device=device))
    with LiveBytes() as loop:
        ddrm_sample(model, y, op, 0.1, steps=5, backend=backend, noise="philox",
                    generator=torch.Generator().manual_seed(0))
    image = b * 3 * 16 * 16 * 4
    assert (loop.peak - net.peak) / image <= 3


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("make", [lambda: O.SuperRes(2, (3, 8, 12)), lambda: O.Colorize((3, 8, 12)),
                                  lambda: O.Blur([0.25, 0.5, 0.25], (3, 8, 12))])
def test_clip_x0_equals_the_reference_on_every_backend(backend, device, make):
    """x0 clamped inside the one-pass step (group operators) or in pixel space before V^T (the others): every
    backend gives the reference's result; a wide prior makes the clamp bite."""
    op = make()
    y = op.H(torch.randn(2, 3, 8, 12, generator=torch.Generator().manual_seed(0)))
    model = GaussianPriorEps(std=2.0)

    def run(be, dev, clip):
        return ddrm_sample(model.to(dev), y.to(dev), op.to(dev), 0.05, steps=5, backend=be, clip_x0=clip,
                           noise="philox", generator=torch.Generator().manual_seed(1)).cpu()

    want = run("reference", "cpu", True)
    torch.testing.assert_close(run(backend, device, True), want, rtol=1e-4, atol=1e-4)
    assert (want - run("reference", "cpu", False)).abs().max() > 1e-2
