"""Noise-prediction models ``model(x_t, t) -> eps`` and their loaders.

- :class:`ADMUNet`: guided-diffusion's UNet (ImageNet 256, FFHQ 256 checkpoints); :class:`DDPMUNet`: the DDPM/DDIM
  "simple" UNet (CelebA-HQ, LSUN); :class:`GaussianPriorEps`: an exact analytic model for tests.
- :func:`load` reads the user's checkpoint (or a diffusers folder) and returns ``(model, betas)``;
  :func:`default_model` is the small model embedded in the package.
"""
from .adm import ADM_PRESETS, ADMConfig, ADMUNet, ClassConditional
from .analytic import GaussianPriorEps
from .ddpm import DDPM_PRESETS, DDPMConfig, DDPMUNet
from .loader import CheckpointError, Loaded, default_model, load, metadata, save

__all__ = ["ADMUNet", "ClassConditional", "ADMConfig", "ADM_PRESETS", "DDPMUNet", "DDPMConfig", "DDPM_PRESETS", "GaussianPriorEps",
           "load", "save", "metadata", "default_model", "Loaded", "CheckpointError"]
