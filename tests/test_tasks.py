"""Task names -> operators, degradations and measurements, as the original runner defines them."""
import pytest
import torch

from ddrm_fast import operators as O
from ddrm_fast import tasks


def test_every_task_builds_and_degrades():
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    g = torch.Generator().manual_seed(0)
    options = tasks.Options(kernel=tasks.motion_kernel(5, 45), scale=3.0, kernel_1d="lanczos3")
    for task in tasks.TASKS:
        op = tasks.make_operator(task, (3, 16, 16), generator=g, options=options)
        O.check(op)
        y = tasks.degrade(x, op, 0.0)
        torch.testing.assert_close(y, op.H(x))
        assert torch.isfinite(op.H_pinv(y)).all()


def test_operator_choices_match_the_original_runner():
    assert isinstance(tasks.make_operator("sr4", (3, 8, 8)), O.SuperRes)
    blur = tasks.make_operator("deblur_uni", (3, 16, 16))
    torch.testing.assert_close(blur.kernel_r, torch.full((9,), 1 / 9))
    gauss = tasks.make_operator("deblur_gauss", (3, 16, 16)).kernel_r
    pdf = torch.exp(-0.5 * (torch.arange(-2.0, 3.0) / 10) ** 2)  # the original: sigma 10, 5 taps, normalised
    torch.testing.assert_close(gauss, pdf / pdf.sum())
    # random inpainting: about half of the pixels missing, the same in every channel
    op = tasks.make_operator("inp", (3, 64, 64), generator=torch.Generator().manual_seed(1))
    obs = op.observed.reshape(3, 64, 64)
    assert torch.equal(obs[0], obs[2]) and 0.45 < obs.mean() < 0.55


def test_bad_sizes_and_masks_name_the_problem():
    with pytest.raises(ValueError, match="not divisible by the ratio 4"):
        tasks.make_operator("sr4", (3, 30, 32))
    with pytest.raises(ValueError, match="does not match the image"):
        tasks.make_operator("inp", (3, 8, 8), mask=torch.ones(8, 9))
    with pytest.raises(ValueError, match="task must be one of"):
        tasks.make_operator("sr3", (3, 8, 8))


def test_observed_measurements():
    g = torch.rand(1, 8, 12) * 2 - 1
    op, y = tasks.measurement_from_observed("color", g)
    torch.testing.assert_close(y, op.H(g.expand(3, -1, -1)[None]))  # a gray image is H of its gray RGB version
    low = torch.rand(3, 4, 6)
    op, y = tasks.measurement_from_observed("sr4", low)
    assert op.image_shape == (3, 16, 24) and torch.equal(y[0], low)
    mask = torch.zeros(8, 12)
    mask[:, :6] = 1
    img = torch.rand(3, 8, 12)
    op, y = tasks.measurement_from_observed("inp", img, mask)
    assert torch.equal(y[0, :, :, 6:], torch.zeros(3, 8, 6)) and torch.equal(y[0, :, :, :6], img[:, :, :6])
    with pytest.raises(ValueError, match="needs --mask"):
        tasks.measurement_from_observed("inp", img)
    with pytest.raises(ValueError, match="cs4"):
        tasks.measurement_from_observed("cs4", img)


def test_noise_only_on_measured_entries():
    mask = torch.zeros(8, 8)
    mask[:4] = 1
    op = tasks.make_operator("inp", (3, 8, 8), mask=mask)
    y = tasks.degrade(torch.zeros(1, 3, 8, 8), op, 0.5, torch.Generator().manual_seed(0))
    assert (y[..., 4:, :] == 0).all() and (y[..., :4, :] != 0).all()


# --- the classical baselines ---------------------------------------------------------------------------------------
def test_super_resolution_baseline_is_bicubic_upsampling_of_y():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 16, 24, generator=g) * 2 - 1
    for task in ("sr2", "sr4", "sr_bicubic4"):
        op = tasks.make_operator(task, (3, 16, 24))
        y = tasks.degrade(x, op, 0.1, g)
        name, base = tasks.baseline(task, op, y, 0.1)
        low = y.reshape(2, 3, 16 // tasks.task_divisor(task), 24 // tasks.task_divisor(task))
        want = torch.nn.functional.interpolate(low, scale_factor=tasks.task_divisor(task), mode="bicubic",
                                               align_corners=False).clamp(-1, 1)
        assert name == "bicubic" and torch.allclose(base, want, atol=1e-6)


def test_deblurring_baseline_is_the_wiener_filter_of_a_white_prior():
    # closed form on the dense matrix of the operator's SVD (its tiny singular values thresholded to zero, as the
    # original's): (H^T H + (sigma / std)^2 I)^-1 H^T y
    op = tasks.make_operator("deblur_gauss", (1, 8, 8))
    dense = torch.stack([op.U(op.singulars() * op.Vt(e[None])[:, :op.m])[0] for e in torch.eye(64)], dim=1).double()
    y = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    for sigma in (0.1, 0.0):
        name, base = tasks.baseline("deblur_gauss", op, y, sigma)
        lam = (sigma / tasks.WIENER_SIGNAL_STD) ** 2
        if sigma == 0:
            want = torch.linalg.pinv(dense, rtol=1e-5) @ y.reshape(-1).double()
        else:
            want = torch.linalg.solve(dense.T @ dense + lam * torch.eye(64, dtype=torch.float64),
                                      dense.T @ y.reshape(-1).double())
        assert name == "Wiener" and torch.allclose(base.reshape(-1).double(), want, rtol=1e-3, atol=1e-3), sigma


def test_other_tasks_compare_with_the_pseudo_inverse_and_a_noise_map_counts_as_its_rms():
    op = tasks.make_operator("inp", (3, 8, 8), generator=torch.Generator().manual_seed(0))
    y = torch.randn(1, *op.y_shape)
    name, base = tasks.baseline("inp", op, y, torch.full(op.y_shape, 0.2))
    assert name == "pseudo-inverse" and torch.equal(base, op.H_pinv(y))
    blur = tasks.make_operator("deblur_uni", (3, 8, 8))
    yb = torch.randn(1, *blur.y_shape)
    noise_map = torch.full(blur.y_shape, 0.1)
    noise_map[0] = 0.5  # rms sqrt((0.25 + 2 * 0.01) / 3) = 0.3, mean 0.233, max 0.5
    assert torch.allclose(tasks.baseline("deblur_uni", blur, yb, noise_map)[1],
                          tasks.baseline("deblur_uni", blur, yb, 0.3)[1])


# --- the tasks beyond the original's -------------------------------------------------------------------------------
def test_motion_kernel_is_a_normalised_non_separable_line():
    k = tasks.motion_kernel(9, 30)
    assert k.shape == (11, 11) and float(k.sum()) == pytest.approx(1.0, abs=1e-6)
    assert int(torch.linalg.matrix_rank(k.double(), rtol=1e-6)) > 1  # not an outer product of two 1-D kernels
    torch.testing.assert_close(k, k.flip(0, 1))  # a line through the centre
    horizontal = tasks.motion_kernel(5, 0, size=5)  # the middle row only, all five pixels, symmetric
    assert float(horizontal[2].sum()) == pytest.approx(1.0, abs=1e-6) and bool((horizontal[2] > 0.1).all())
    torch.testing.assert_close(horizontal[2], horizontal[2].flip(0))


def test_the_bundled_motion_blur_file_is_the_motion_kernel():
    import os

    from ddrm_fast.imageio import read_kernel

    path = os.path.join(os.path.dirname(tasks.__file__), "data", "motion_blur.png")
    torch.testing.assert_close(read_kernel(path), tasks.motion_kernel(9, 30), atol=2e-4, rtol=0)  # 8-bit levels


def test_new_tasks_build_the_operators_they_name():
    x = torch.rand(2, 3, 24, 20) * 2 - 1
    k = tasks.motion_kernel(7, 60)
    deblur = tasks.make_operator("deblur", (3, 24, 20), options=tasks.Options(kernel=k))
    assert isinstance(deblur, O.Convolution) and torch.equal(deblur.kernel[0], k)
    resize = tasks.make_operator("resize", (3, 24, 20), options=tasks.Options(scale=2.5, kernel_1d="box"))
    assert resize.y_shape == (3, 10, 8)
    torch.testing.assert_close(resize.H(x), O.resize_matrix(24, 10, "box").float() @ x
                               @ O.resize_matrix(20, 8, "box").float().t())
    color_sr = tasks.make_operator("color_sr4", (3, 24, 20))
    luma = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)  # ITU-R BT.601
    want = O.resize_matrix(24, 6).float() @ luma @ O.resize_matrix(20, 5).float().t()
    torch.testing.assert_close(color_sr.H(x), want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="task deblur needs a blur kernel"):
        tasks.make_operator("deblur", (3, 8, 8))
    with pytest.raises(ValueError, match="larger than the image"):
        tasks.make_operator("deblur", (3, 8, 8), options=tasks.Options(kernel=torch.ones(9, 9) / 81))
    with pytest.raises(ValueError, match="scale must be"):
        tasks.Options(scale=0.5)
    with pytest.raises(ValueError, match="kernel_1d must be one of"):
        tasks.Options(kernel_1d="nearest")


def test_new_tasks_observed_inputs_are_their_measurements():
    from ddrm_fast import restoration

    options = tasks.Options(kernel=tasks.motion_kernel(5, 20), scale=2.0, kernel_1d="bilinear")
    clean = torch.rand(3, 16, 24) * 2 - 1
    for task in ("deblur", "resize", "color_sr4"):
        m = restoration.measure(task, clean, sigma_y=0.0, seed=0, options=options)
        picture = m.y[0] if m.y.shape[1] == 3 else m.y[0].expand(3, -1, -1)  # a gray file read as RGB
        again = restoration.measure(task, picture, sigma_y=0.0, seed=0, observed=True, options=options)
        assert again.operator.image_shape == (3, 16, 24), task
        torch.testing.assert_close(again.y, m.y, atol=1e-5, rtol=0)
        assert tasks.restored_size(task, *picture.shape[1:], True, options) == (16, 24)
    assert tasks.input_modes("color_sr4", True) == ("L", "RGB") and tasks.input_modes("deblur", True) == ("RGB",)


def test_deblur_baseline_is_the_fourier_wiener_filter():
    """Wiener deconvolution done the classical way, in the 2-D DFT: conj(K) Y / (|K|^2 + (sigma / std)^2), with the
    frequencies the operator counts unmeasured (|K| < 1e-3) left out."""
    k = tasks.motion_kernel(7, 30)
    op = tasks.make_operator("deblur", (1, 16, 12), options=tasks.Options(kernel=k))
    y = torch.randn(1, 1, 16, 12, generator=torch.Generator().manual_seed(0))
    padded = torch.zeros(16, 12, dtype=torch.float64)
    padded[:k.shape[0], :k.shape[1]] = k.double()
    K = torch.fft.fft2(torch.roll(padded, (-(k.shape[0] // 2), -(k.shape[1] // 2)), dims=(0, 1)))
    for sigma in (0.1, 0.02):
        lam = (sigma / tasks.WIENER_SIGNAL_STD) ** 2
        gain = torch.where(K.abs() >= 1e-3, K.conj() / (K.abs() ** 2 + lam), torch.zeros_like(K))
        want = torch.fft.ifft2(torch.fft.fft2(y[0, 0].double()) * gain).real
        name, base = tasks.baseline("deblur", op, y, sigma)
        assert name == "Wiener"
        torch.testing.assert_close(base[0, 0].double(), want, atol=1e-4, rtol=0)


def test_resize_baseline_is_the_matching_upsampling():
    import torch.nn.functional as F

    op = tasks.make_operator("resize", (3, 16, 20), options=tasks.Options(scale=2.0, kernel_1d="bilinear"))
    y = torch.rand(1, 3, 8, 10) * 2 - 1
    name, base = tasks.baseline("resize", op, y, 0.0)
    assert name == "upsampled"
    torch.testing.assert_close(base, F.interpolate(y, size=(16, 20), mode="bilinear", align_corners=False),
                               atol=1e-5, rtol=0)
    name, base = tasks.baseline("color_sr4", tasks.make_operator("color_sr4", (3, 16, 20)), y[:, :1, :4, :5], 0.0)
    assert name == "gray upsampled" and base.shape == (1, 3, 16, 20) and torch.equal(base[:, 0], base[:, 2])
