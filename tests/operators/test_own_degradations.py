"""Any convolution kernel (the real Fourier basis), Kronecker operators, 1-D resizing kernels and operators.check,
each against an independent computation: dense SVDs, torch's convolution and interpolation, Kronecker products."""
import pytest
import torch
import torch.nn.functional as F

from ddrm_fast import operators as O


def _matrix(fn, size, shape):
    """The matrix of a linear map on (B, *shape) inputs, column j = fn(e_j)."""
    return fn(torch.eye(size).reshape(size, *shape)).reshape(size, -1).t().double()


def _circular_conv(x, kernel):
    """Circular 2-D convolution by torch's conv2d: pad circularly, correlate with the flipped kernel."""
    c = x.shape[1]
    k = kernel if kernel.dim() == 3 else kernel[None].expand(c, *kernel.shape)
    kh, kw = k.shape[-2:]
    padded = F.pad(x, (kw - 1 - kw // 2, kw // 2, kh - 1 - kh // 2, kh // 2), mode="circular")
    return F.conv2d(padded, k.flip(-2, -1)[:, None], groups=c)


@pytest.mark.parametrize("shape,kshape", [((2, 6, 5), (3, 4)), ((1, 7, 8), (7, 8)), ((3, 8, 6), (3, 2, 5)),
                                          ((1, 4, 4), (1, 1))])
def test_convolution_against_dense_svd_and_torch(shape, kshape):
    g = torch.Generator().manual_seed(0)
    kernel = torch.rand(*kshape, generator=g) - 0.2  # signed, non-symmetric: complex transfer function
    op = O.Convolution(kernel, shape, zero_threshold=0.0)
    x = torch.randn(3, *shape, generator=g)
    torch.testing.assert_close(op.H(x), _circular_conv(x, kernel), atol=1e-5, rtol=1e-5)
    n = op.n
    H = _matrix(op.H, n, shape)
    V, U = _matrix(op.V, n, (n,)), _matrix(op.U, n, (n,))
    s = op.singulars().double()
    torch.testing.assert_close(V.t() @ V, torch.eye(n, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(U.t() @ U, torch.eye(n, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(U @ torch.diag(s) @ V.t(), H, atol=1e-5, rtol=0)
    # the same singular values as a dense SVD of the circulant matrix
    torch.testing.assert_close(s.sort().values, torch.linalg.svdvals(H).sort().values, atol=1e-5, rtol=0)


def test_convolution_thresholds_and_refusals():
    op = O.Convolution(torch.full((3, 3), 1 / 9), (1, 9, 9))  # the box has zeros in its transfer function
    assert (op.singulars() == 0).sum() > 0 and float(op.singulars().max()) == pytest.approx(1.0, abs=1e-6)
    for kwargs, msg in (({"kernel": torch.ones(9, 9), "image_shape": (1, 8, 8)}, "larger than the image"),
                        ({"kernel": torch.ones(3), "image_shape": (1, 8, 8)}, "kernel must be a real"),
                        ({"kernel": torch.ones(2, 3, 3), "image_shape": (3, 8, 8)}, "kernel must be a real"),
                        ({"kernel": torch.full((3, 3), float("nan")), "image_shape": (1, 8, 8)}, "finite"),
                        ({"kernel": torch.ones(3, 3), "image_shape": (1, 8, 8), "boundary": "zero"}, "circular")):
        with pytest.raises(ValueError, match=msg):
            O.Convolution(**kwargs)


def test_kronecker_against_the_dense_kronecker_product():
    g = torch.Generator().manual_seed(1)
    A_c, A_h, A_w = torch.randn(2, 3, generator=g), torch.randn(3, 5, generator=g), torch.randn(4, 4, generator=g)
    op = O.Kronecker(A_c, A_h, A_w, zero_threshold=0.0)
    dense = torch.kron(A_c, torch.kron(A_h, A_w)).double()
    torch.testing.assert_close(_matrix(op.H, op.n, op.image_shape), dense, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(op.singulars().double().sort().values,
                               torch.linalg.svdvals(dense).sort().values, atol=1e-5, rtol=0)
    # the identity factor: the same as the explicit identity matrix
    eye = O.Kronecker(None, A_h, A_w, image_shape=(3, 5, 4), zero_threshold=0.0)
    full = O.Kronecker(torch.eye(3), A_h, A_w, zero_threshold=0.0)
    x = torch.randn(2, 3, 5, 4, generator=g)
    torch.testing.assert_close(eye.H(x), full.H(x))
    torch.testing.assert_close(eye.Ut(eye.H(x)), full.Ut(full.H(x)), atol=1e-5, rtol=1e-5)


def test_kronecker_refusals():
    with pytest.raises(ValueError, match="A_c is the identity"):
        O.Kronecker(None, None, torch.ones(2, 4))
    with pytest.raises(ValueError, match="A_w must be a real"):
        O.Kronecker(None, None, torch.ones(5, 4), image_shape=(1, 2, 4))
    with pytest.raises(ValueError, match="does not match the factors"):
        O.Kronecker(torch.ones(1, 3), None, None, image_shape=(2, 4, 4))


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_resize_matrix_shrinking_equals_torch_antialias(mode):
    x = torch.randn(1, 1, 40, 36, dtype=torch.float64)
    ours = O.resize_matrix(40, 10, mode) @ x[0, 0] @ O.resize_matrix(36, 12, mode).t()
    want = F.interpolate(x, size=(10, 12), mode=mode, antialias=True, align_corners=False)[0, 0]
    # torch renormalises the kernel at the border where this reflects: compare the interior
    torch.testing.assert_close(ours[2:-2, 2:-2], want[2:-2, 2:-2], atol=1e-6, rtol=0)


def test_resize_matrix_enlarging_and_box():
    x = torch.randn(1, 1, 6, 5, dtype=torch.float64)
    up = O.resize_matrix(6, 12, "bilinear") @ x[0, 0] @ O.resize_matrix(5, 10, "bilinear").t()
    torch.testing.assert_close(up, F.interpolate(x, size=(12, 10), mode="bilinear", align_corners=False)[0, 0])
    box = O.resize_matrix(8, 2, "box") @ x.new_ones(8)
    torch.testing.assert_close(box, x.new_ones(2))
    assert torch.equal(O.resize_matrix(8, 2, "box")[0], torch.tensor([0.25] * 4 + [0.0] * 4, dtype=torch.float64))
    lanczos = O.resize_matrix(30, 7, "lanczos3")
    torch.testing.assert_close(lanczos.sum(1), torch.ones(7, dtype=torch.float64))
    with pytest.raises(ValueError, match="kernel must be one of"):
        O.resize_matrix(8, 4, "nearest")


def test_separable_operators_are_kronecker_instances():
    blur = O.Blur([0.25, 0.5, 0.25], (2, 6, 7))
    assert isinstance(blur, O.Kronecker) and blur.y_shape == (2, 6, 7)
    sr = O.SRBicubic(2, (3, 8, 8))
    assert torch.equal(sr.factors[1], O.resize_matrix(8, 4, "bicubic").float())


def _custom_operators():
    return [O.Convolution(torch.rand(5, 5), (3, 16, 12)), O.Convolution(torch.full((1, 9), 1 / 9), (3, 16, 16)),
            O.Kronecker([[0.299, 0.587, 0.114]], O.resize_matrix(16, 4), O.resize_matrix(16, 4)),
            O.Blur([1 / 9] * 9, (3, 32, 32)), O.SRBicubic(4, (3, 16, 16)), O.SuperRes(2, (3, 8, 8)),
            O.Inpaint((torch.rand(2, 1, 8, 8) > 0.5).float(), channels=3), O.Colorize((3, 8, 8)),
            O.WalshHadamardCS(4, (3, 8, 8)), O.Denoise((3, 8, 8)), O.Dense(torch.randn(30, 48), (3, 4, 4))]


@pytest.mark.parametrize("op", _custom_operators(), ids=lambda op: type(op).__name__)
def test_every_operator_passes_check(op):
    errors = O.check(op)
    assert max(errors.values()) < 1e-5


class _Broken(O.Dense):
    """A Dense operator with one identity broken at a time."""

    def __init__(self, broken):
        super().__init__(torch.randn(10, 12, generator=torch.Generator().manual_seed(0)), (1, 3, 4))
        self.broken = broken

    def V(self, vec):
        return super().V(vec) * (1.01 if self.broken == "V" else 1.0)

    def U(self, vec):
        return super().U(vec).flip(1) if self.broken == "U" else super().U(vec)

    def H(self, x):
        return super().H(x) * (2.0 if self.broken == "H" else 1.0)

    def singulars(self):
        return super().singulars()[:-1] if self.broken == "s" else super().singulars()


@pytest.mark.parametrize("broken,line", [("V", r"V\^T V = I: relative error 1.00e-02"),
                                         ("U", r"U U\^T = I: relative error"),
                                         ("H", r"H x = U S V\^T x: relative error"),
                                         ("s", r"singulars: must be finite values >= 0 of shape \(10,\)")])
def test_check_names_the_failing_identity(broken, line):
    with pytest.raises(O.OperatorCheckError, match=line) as info:
        O.check(_Broken(broken))
    assert all(row.startswith("  ") for row in str(info.value).splitlines()[1:])


def test_check_allows_only_the_declared_truncation():
    op = O.Blur([1 / 9] * 9, (1, 32, 32), zero_threshold=0.05)  # many singular values cut
    O.check(op)
    op.zero_threshold = 0.0  # the same truncation, undeclared: H disagrees with its SVD
    with pytest.raises(O.OperatorCheckError, match="H x = U S V"):
        O.check(op)
