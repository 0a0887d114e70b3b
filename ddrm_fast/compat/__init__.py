"""Drop-in replacement for the original DDRM API (functions/svd_replacement.py and functions/denoising.py).

``from ddrm_fast.compat import ...`` replaces the original imports unchanged: the same class names, constructor
signatures, flat (B, N) layouts, SVD signs and quirks, so results match the original's (tests/test_golden.py). What
is not kept is the cost: constructors are vectorized (Inpainting at 256x256 is milliseconds, not seconds), no
transform is computed and thrown away, and the sampling loop has no per-step host syncs or device-to-host copies.

Quirks kept on purpose (the ``ddrm_fast.operators`` classes are the correct versions):
- Deblurring/Deblurring2D build each 1-D matrix over columns i - K//2 .. i + K//2 - 1, dropping the last tap, and
  zero 1-D singular values under ``ZERO``;
- Deblurring/Deblurring2D return their singular values tiled per channel while their spectral layout interleaves
  channels, so their H is not the blur (y made by the same operator keeps the code self-consistent);
- zero singular values inside the measured range take the 'less noisy than y' case when sigma_0 > 0;
- SVD signs are torch's (U = -1 for SuperResolution and Colorization).

One concern a module: ``functions.py`` (the ``H_functions`` classes), ``sampling.py`` (the sampling loop),
``noise.py`` (the original's draws for ``ddrm_sample(noise="compat")``), and the runner's pieces for ``ddrm-fast
original``: ``runner.py`` (its ``--deg`` table), ``networks.py`` (its networks and classifier guidance, built as it
builds them), ``datasets.py`` (its data sets, their order and preprocessing).
"""
from .functions import (Colorization, Deblurring, Deblurring2D, Denoising, GeneralH, H_functions, Inpainting, SRConv,
                        SuperResolution, WalshHadamardCS)
from .noise import CompatNoise, equivalent
from .runner import DEGRADATIONS, Degradation, check_runner_degradation, runner_operator
from .sampling import efficient_generalized_steps

__all__ = ["H_functions", "GeneralH", "Inpainting", "Denoising", "SuperResolution", "Colorization",
           "WalshHadamardCS", "SRConv", "Deblurring", "Deblurring2D", "efficient_generalized_steps", "equivalent",
           "CompatNoise", "runner_operator", "check_runner_degradation", "Degradation", "DEGRADATIONS"]
