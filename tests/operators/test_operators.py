"""Operators: orthonormal V, H = U S V^T, natural-layout H against independent computations."""
import pytest
import torch
import torch.nn.functional as F

from ddrm_fast import operators as O
from ddrm_fast.operators.cs import fwht


def _explicit(op, fn, size):
    """The matrix of a linear map fn on (B, size) inputs, column by column."""
    return fn(torch.eye(size)).t()


def _ops():
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(3, 1, 6, 10, generator=g) > 0.4).float()
    return {
        "denoise": O.Denoise((3, 6, 10)),
        "inpaint_shared": O.Inpaint((torch.rand(1, 3, 6, 10, generator=g) > 0.5).float()),
        "inpaint_per_sample": O.Inpaint(mask, channels=3),
        "sr2_nonsquare": O.SuperRes(2, (3, 6, 10)),
        "sr3": O.SuperRes(3, (2, 6, 9)),
        "sr2_masked_lowres": O.SuperRes(2, (3, 6, 10), observed=(torch.rand(3, 1, 3, 5, generator=g) > 0.3)),
        "colorize": O.Colorize((3, 6, 10), weights=[0.299, 0.587, 0.114]),
        "blur": O.Blur([0.25, 0.5, 0.25], (2, 6, 10), zero_threshold=0.0),
        "blur_aniso": O.Blur([1.0, 2.0, 3.0, 2.0, 1.0], (1, 7, 8), kernel_c=[0.5, 0.5], zero_threshold=0.0),
        "sr_bicubic2": O.SRBicubic(2, (2, 8, 12), zero_threshold=0.0),
        "cs4": O.WalshHadamardCS(4, (3, 4, 8)),
        "dense": O.Dense(torch.randn(20, 2 * 3 * 5, generator=g), (2, 3, 5), zero_threshold=0.0),
        "convolution_shared": O.Convolution(torch.rand(3, 4, generator=g), (2, 6, 5), zero_threshold=0.0),
        "convolution_per_channel": O.Convolution(torch.rand(3, 2, 3, generator=g), (3, 7, 8), zero_threshold=0.0),
        "kronecker_color_sr": O.Kronecker([[0.299, 0.587, 0.114]], O.resize_matrix(8, 4), O.resize_matrix(10, 3),
                                          zero_threshold=0.0),
        "kronecker_identity_h": O.Kronecker(torch.randn(2, 3, generator=g), None, O.resize_matrix(9, 4, "box"),
                                            image_shape=(3, 5, 9), zero_threshold=0.0),
    }


OPS = _ops()


@pytest.mark.parametrize("name", list(OPS))
def test_V_is_orthogonal(name):
    op = OPS[name]
    b = op.batch or 2
    Vm = _explicit(op, op.V, op.n)
    assert torch.allclose(Vm @ Vm.t(), torch.eye(op.n), atol=1e-5)
    x = torch.randn(b, *op.image_shape)
    assert torch.allclose(op.V(op.Vt(x)).view_as(x), x, atol=1e-5)


@pytest.mark.parametrize("name", list(OPS))
def test_H_equals_U_S_Vt(name):
    op = OPS[name]
    b = op.batch or 2
    x = torch.randn(b, *op.image_shape)
    s = op.singulars().expand(b, op.m)
    svd = op.U(s * op.Vt(x)[:, : op.m])
    assert torch.allclose(op.H(x).reshape(b, -1), svd, atol=1e-5)
    # U is orthogonal on the measurement space
    Um = _explicit(op, op.U, op.m)
    assert torch.allclose(Um @ Um.t(), torch.eye(op.m), atol=1e-5)


@pytest.mark.parametrize("name", list(OPS))
def test_pinv_inverts_on_the_range(name):
    op = OPS[name]
    b = op.batch or 2
    x = torch.randn(b, *op.image_shape)
    y = op.H(x)
    assert torch.allclose(op.H(op.H_pinv(y)), y, atol=1e-4)


def test_natural_layouts_against_torch():
    x = torch.randn(3, 3, 6, 10)
    assert torch.allclose(O.SuperRes(2, (3, 6, 10)).H(x), F.avg_pool2d(x, 2), atol=1e-6)
    w = torch.tensor([0.299, 0.587, 0.114])
    assert torch.allclose(O.Colorize((3, 6, 10), weights=w).H(x), (x * w.view(1, 3, 1, 1)).sum(1, keepdim=True),
                          atol=1e-6)
    assert torch.allclose(O.Colorize((3, 6, 10)).H(x), x.mean(1, keepdim=True), atol=1e-6)
    mask = (torch.rand(3, 1, 6, 10) > 0.5).float()
    assert torch.equal(O.Inpaint(mask, channels=3).H(x), x * mask)
    assert torch.equal(O.Denoise((3, 6, 10)).H(x), x)


@pytest.mark.parametrize("kr,kc", [([1 / 9] * 9, None), ([0.1, 0.2, 0.4, 0.2, 0.1], [0.3, 0.4, 0.3]),
                                   ([0.25, 0.75], None)])
def test_blur_is_conv2d(kr, kc):
    x = torch.randn(2, 3, 12, 16)
    op = O.Blur(kr, (3, 12, 16), kernel_c=kc)
    kr_t = torch.tensor(kr)
    kc_t = kr_t if kc is None else torch.tensor(kc)
    k2 = torch.outer(kr_t, kc_t)
    Kr, Kc = k2.shape
    padded = F.pad(x, (Kc // 2, Kc - 1 - Kc // 2, Kr // 2, Kr - 1 - Kr // 2))
    ref = F.conv2d(padded, k2.expand(3, 1, Kr, Kc).contiguous(), groups=3)
    assert torch.allclose(op.H(x), ref, atol=1e-5)


def test_blur_threshold_marks_small_singulars_unmeasured():
    op = O.Blur([1 / 9] * 9, (1, 32, 32), zero_threshold=1e-2)
    s = op.singulars()
    assert bool((s == 0).any()) and bool((s[s > 0] >= 1e-2).all())


def test_bicubic_interior_matches_torch_antialias():
    x = torch.randn(1, 2, 32, 48)
    for r in (2, 4):
        y = O.SRBicubic(r, (2, 32, 48)).H(x)
        ref = F.interpolate(x, scale_factor=1 / r, mode="bicubic", antialias=True, align_corners=False)
        # away from the borders (where torch renormalises a truncated kernel instead of reflecting)
        assert torch.allclose(y[..., 2:-2, 2:-2], ref[..., 2:-2, 2:-2], atol=1e-5)


def test_fwht_is_orthonormal_hadamard():
    n = 8
    h = torch.tensor([[1.0]])
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    x = torch.randn(5, n)
    assert torch.allclose(fwht(x), x @ h.t() / n**0.5, atol=1e-6)


def test_cs_measures_chosen_coefficients():
    op = O.WalshHadamardCS(2, (1, 4, 4), perm=torch.arange(16).flip(0))
    x = torch.randn(2, 1, 4, 4)
    assert torch.allclose(op.H(x)[:, 0], fwht(x.reshape(2, 1, 16))[:, 0, op.perm[:8]], atol=1e-6)


def test_dense_H_is_the_matrix():
    mat = torch.randn(7, 12)
    op = O.Dense(mat, (1, 3, 4))
    x = torch.randn(2, 1, 3, 4)
    assert torch.allclose(op.H(x), x.reshape(2, 12) @ mat.t(), atol=1e-5)


def test_per_sample_masks_give_per_sample_singulars():
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, :, :2] = 1
    mask[1, :, 2:] = 1
    op = O.Inpaint(mask, channels=3)
    s = op.singulars()
    assert s.shape == (2, 48)
    assert torch.equal(s.view(2, 3, 4, 4), mask.expand(2, 3, 4, 4))


def test_group_structure_is_exposed():
    op = O.SuperRes(4, (3, 16, 8))
    assert op.group_shape == (1, 4, 4) and torch.allclose(op.weights, torch.full((16,), 1 / 16))
    op = O.Colorize((3, 4, 4), weights=[0.2, 0.3, 0.5])
    assert op.group_shape == (3, 1, 1) and op.observed is None
    assert torch.allclose(op.Q[:, 0], torch.tensor([0.2, 0.3, 0.5]) / torch.tensor([0.2, 0.3, 0.5]).norm())


@pytest.mark.parametrize("make,match", [
    (lambda: O.SuperRes(3, (3, 8, 9)), "ratio 3 does not divide"),
    (lambda: O.SuperRes(0, (3, 8, 8)), "ratio must be a positive int"),
    (lambda: O.SRBicubic(3, (3, 8, 9)), "ratio 3 does not divide"),
    (lambda: O.Inpaint(torch.ones(1, 2, 4, 4), channels=3), "mask has 2 channels"),
    (lambda: O.Inpaint(torch.ones(4)), "mask must have shape"),
    (lambda: O.SuperRes(2, (3, 8, 8), observed=torch.ones(1, 1, 8, 8)), "observed must have shape"),
    (lambda: O.Colorize((3, 4, 4), weights=[0, 0, 0]), "weights must be finite and not all zero"),
    (lambda: O.Colorize((3, 4, 4), weights=[1, 1]), "weights must have 3 values"),
    (lambda: O.WalshHadamardCS(2, (1, 3, 4)), "power of two"),
    (lambda: O.Dense(torch.randn(3, 5), (1, 2, 2)), "matrix must be"),
    (lambda: O.Blur([[1.0]], (1, 4, 4)), "kernel must be"),
    (lambda: O.Denoise((3, 0, 4)), "image_shape"),
    (lambda: O.Denoise((3, 16.5, 16)), r"image_shape must be a \(C, H, W\) tuple of ints, got \(3, 16.5, 16\)"),
    (lambda: O.SuperRes(2, (3, 16, True)), "image_shape must be a"),
    (lambda: O.Blur([1 / 3] * 3, (3, 8, 8), zero_threshold=float("nan")), "zero_threshold must be a finite"),
    (lambda: O.Blur([1 / 3] * 3, (3, 8, 8), zero_threshold=-1.0), "zero_threshold must be a finite"),
    (lambda: O.Dense(torch.randn(3, 4), (1, 2, 2), zero_threshold=float("inf")), "zero_threshold must be a finite"),
    (lambda: O.Dense(torch.randn(3, 4, dtype=torch.complex64), (1, 2, 2)), "matrix must be real"),
])
def test_bad_construction_names_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_wrong_x_and_y_shapes_name_the_argument():
    op = O.SuperRes(2, (3, 8, 8))
    with pytest.raises(ValueError, match="x must have shape"):
        op.H(torch.randn(1, 3, 8, 6))
    with pytest.raises(ValueError, match="y must have shape"):
        op.Ut(torch.randn(1, 3, 8, 8))
    mask_op = O.Inpaint(torch.ones(2, 1, 4, 4), channels=1)
    with pytest.raises(ValueError, match="per-sample data for 2"):
        mask_op.H(torch.randn(3, 1, 4, 4))
