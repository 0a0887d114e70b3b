"""The drop-in classes: any user H_functions works, the original's structure is kept, and where the original's
blur differs from the true blur (ddrm_fast.operators.Blur is the true one)."""
import torch
import torch.nn.functional as F

from ddrm_fast import compat, operators as O
from ddrm_fast.schedules import linear_betas

from conftest import golden_eps_model


class UserIdentity(compat.H_functions):
    """What a user might write: H = I with an explicit (and reversed) basis."""

    def __init__(self, n):
        self.n = n

    def V(self, vec):
        return vec.reshape(vec.shape[0], -1).flip(1)

    def Vt(self, vec):
        return vec.reshape(vec.shape[0], -1).flip(1)

    def U(self, vec):
        return vec.reshape(vec.shape[0], -1).flip(1)

    def Ut(self, vec):
        return vec.reshape(vec.shape[0], -1).flip(1)

    def singulars(self):
        return torch.ones(self.n)

    def add_zeros(self, vec):
        return vec.reshape(vec.shape[0], -1)


def _run(H, y, sigma, seed=0):
    betas = linear_betas()
    torch.manual_seed(seed)
    x = torch.randn(2, 3, 8, 8)
    return compat.efficient_generalized_steps(x, range(0, 1000, 50), golden_eps_model(betas), betas, H, y, sigma,
                                              etaB=1.0, etaA=0.85, etaC=0.85)


def test_user_written_H_functions_is_accepted():
    """A user's H = I in a reversed basis is Denoising with the pixels reversed: the model is elementwise, so it
    commutes with the reversal, and the original draws the same spectral noise in either basis."""
    y = torch.randn(2, 192)
    xs, x0s = _run(UserIdentity(192), y, 0.1)
    ref, ref0 = _run(compat.Denoising(3, 8, "cpu"), y.flip(1), 0.1)
    assert len(xs) == len(ref) == 21 and len(x0s) == len(ref0) == 20
    for a, b in zip(xs, ref):
        torch.testing.assert_close(a.reshape(2, -1).flip(1), b.reshape(2, -1), rtol=1e-6, atol=1e-6)


def test_sampling_records_no_autograd_history():
    betas = linear_betas()
    weight = torch.nn.Parameter(torch.tensor(1.0))  # a model with a trainable parameter, grad mode on

    def model(x, t):
        return weight * golden_eps_model(betas)(x, t)

    with torch.enable_grad():
        xs, x0s = compat.efficient_generalized_steps(torch.randn(1, 3, 8, 8), range(0, 1000, 250), model, betas,
                                                     compat.Denoising(3, 8, "cpu"), torch.zeros(1, 192), 0.1,
                                                     etaB=1.0, etaA=0.85, etaC=0.85)
    assert not any(v.requires_grad for v in xs + x0s)


def test_general_H_of_the_identity_equals_denoising():
    y = torch.randn(2, 192)
    a, _ = _run(compat.GeneralH(torch.eye(192)), y, 0.1)
    b, _ = _run(compat.Denoising(3, 8, "cpu"), y, 0.1)
    assert torch.allclose(a[-1], b[-1], atol=1e-4)


def test_inpainting_indices_as_the_original_builds_them():
    missing = torch.tensor([5, 0, 17, 3, 40])
    H = compat.Inpainting(3, 4, missing, "cpu")
    assert H.kept_indices.tolist() == [i for i in range(48) if i not in missing.tolist()]
    x = torch.randn(2, 3, 4, 4)
    pixel_major = x.reshape(2, 3, 16).permute(0, 2, 1).reshape(2, -1)
    assert torch.equal(H.Vt(x), torch.cat([pixel_major[:, H.kept_indices], pixel_major[:, missing]], 1))
    assert torch.allclose(H.V(H.Vt(x)).view_as(x), x)


def test_compat_bases_are_orthogonal():
    kernel = torch.tensor([1 / 9] * 9)
    for H, n in [(compat.SuperResolution(3, 8, 2, "cpu"), 192), (compat.Colorization(8, "cpu"), 192),
                 (compat.Deblurring(kernel, 3, 8, "cpu"), 192), (compat.Deblurring2D(kernel, kernel[:5] * 1.8, 3, 8,
                                                                                       "cpu"), 192),
                 (compat.SRConv(torch.ones(4) / 4, 3, 8, "cpu", stride=2), 192),
                 (compat.WalshHadamardCS(3, 8, 4, torch.randperm(64), "cpu"), 192)]:
        V = H.V(torch.eye(n))
        assert torch.allclose(V @ V.t(), torch.eye(n), atol=1e-5), type(H).__name__


def test_original_blur_is_not_the_blur_but_ours_is():
    kernel = torch.tensor([1 / 9] * 9)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    true = F.conv2d(x, torch.full((3, 1, 9, 9), 1 / 81), padding=4, groups=3)
    legacy = compat.Deblurring(kernel, 3, 32, "cpu").H(x).reshape(2, 3, 32, 32)
    ours = O.Blur(kernel, (3, 32, 32)).H(x)
    assert torch.allclose(ours, true, atol=1e-5)
    rel = (legacy - true).norm() / true.norm()
    assert rel > 0.9  # the golden README measures ~0.99 for the tiled singular values
