"""The original runner's networks (its runners/diffusion.py ``sample``), built as it builds them: from the config's
``model`` section (guided-diffusion's ``create_model`` for ``type: openai``, the DDIM code's ``Model`` for
``type: simple``) and, for a class-conditional model, its ``classifier`` section (``create_classifier``). They are
built on the CPU under torch's global generator, whose state their random initialisations advance exactly as the
original's do (the original seeds before it builds them, and draws its degradation and noise after), then given the
checkpoint's weights, loaded strictly; :func:`classifier_guidance` is the original's ``cond_fn``.

Every key of the config's sections is honoured or refused (:func:`check_config`): a key the original reads and passes
on changes what is built here the same way, a key it ignores is ignored here too, and any other key is a one-line
refusal naming it.
"""
from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F

from ..models.adm import ADMConfig, ADMUNet
from ..models.adm_classifier import ADMClassifier, ClassifierConfig
from ..models.ddpm import DDPMConfig, DDPMUNet
from ..models.loader import load_weights

__all__ = ["check_config", "build_model", "build_classifier", "checkpoint_paths", "classifier_guidance",
           "model_complete", "load_network"]

# guided-diffusion's create_model(**config.model): its parameters, with their defaults
_CREATE_MODEL = dict(image_size=None, num_channels=None, num_res_blocks=None, channel_mult="", learn_sigma=False,
                     class_cond=False, use_checkpoint=False, attention_resolutions="16", num_heads=1,
                     num_head_channels=-1, num_heads_upsample=-1, use_scale_shift_norm=False, dropout=0.0,
                     resblock_updown=False, use_fp16=False, use_new_attention_order=False)
# create_classifier(**args_to_dict(config.classifier, classifier_defaults().keys())) and cond_fn's scale
_CREATE_CLASSIFIER = dict(image_size=64, classifier_use_fp16=False, classifier_width=128, classifier_depth=2,
                          classifier_attention_resolutions="32,16,8", classifier_use_scale_shift_norm=True,
                          classifier_resblock_updown=True, classifier_pool="attention", classifier_scale=1.0)
# the DDIM code's Model(config): config.model's fields it reads (resolution is config.data.image_size)
_SIMPLE = dict(ch=128, out_ch=3, ch_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2, attn_resolutions=(16,), dropout=0.0,
               in_channels=3, resamp_with_conv=True)
# the other keys of the original's configs: read by the rest of the runner (the data set, the schedule, the batch
# size: compat.datasets, cli.original), or not by sampling at all (training settings, and create_model's **kwargs)
_OTHER_KEYS = {"model": {"type", "in_channels", "out_channels", "var_type", "ema_rate", "ema", "out_ch",
                         "resamp_with_conv"},
            "data": {"random_flip", "num_workers", "category", "logit_transform", "uniform_dequantization",
                     "gaussian_dequantization", "rescaled", "dataset", "image_size", "channels", "subset_1k",
                     "out_of_dist"},
            "sampling": {"batch_size", "last_only"},
            "diffusion": {"beta_schedule", "beta_start", "beta_end", "num_diffusion_timesteps"}}


def check_config(cfg, path: str) -> None:
    """A ValueError naming the first key of the data / model / classifier / diffusion / sampling sections that the
    drop-in cannot honour: one it does not know, or a data transform it does not apply (logit transform,
    dequantisation, images not rescaled to [-1, 1])."""
    model_keys = set(_CREATE_MODEL) if cfg.model.type == "openai" else set(_SIMPLE)
    known = {"model": model_keys | _OTHER_KEYS["model"], "classifier": set(_CREATE_CLASSIFIER),
             "data": _OTHER_KEYS["data"], "sampling": _OTHER_KEYS["sampling"], "diffusion": _OTHER_KEYS["diffusion"]}
    for section, keys in known.items():
        for key in vars(getattr(cfg, section, SimpleNamespace())):
            if key not in keys:
                raise ValueError(f"--config {path}: {section}.{key} is not a key the original's sampling reads; the "
                                 f"drop-in cannot honour it (remove it)")
    if cfg.model.type not in ("openai", "simple"):
        raise ValueError(f"--config {path}: model.type {cfg.model.type!r}: the original samples 'openai' and "
                         f"'simple' models only")
    for key in ("logit_transform", "uniform_dequantization", "gaussian_dequantization"):
        if getattr(cfg.data, key, False):
            raise ValueError(f"--config {path}: data.{key} is not applied by the drop-in (it samples images "
                             f"rescaled to [-1, 1]); set it false")
    if not getattr(cfg.data, "rescaled", True):
        raise ValueError(f"--config {path}: data.rescaled false is not applied by the drop-in; set it true")


def _get(section, key: str, defaults: dict):
    return getattr(section, key, defaults[key])


def _channel_mult(text, image_size: int) -> Tuple[float, ...]:
    """create_model's channel_mult: its string ("1,1,2,2,4,4"), or by image size when empty."""
    if text not in ("", None):
        return tuple(float(v) for v in str(text).split(",")) if isinstance(text, str) else tuple(text)
    by_size = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}
    if image_size not in by_size:
        raise ValueError(f"model.image_size {image_size}: give model.channel_mult (create_model knows 64, 128, 256 "
                         f"and 512 only)")
    return by_size[image_size]


def model_complete(cfg) -> bool:
    """Whether the config's model section says what network to build (create_model's required arguments)."""
    return cfg.model.type == "simple" or all(hasattr(cfg.model, k) for k in ("image_size", "num_channels",
                                                                              "num_res_blocks"))


def build_model(cfg) -> torch.nn.Module:
    """The config's network, randomly initialised as the original builds it (advancing torch's global generator)."""
    m = cfg.model
    if m.type == "simple":
        fields = {k: getattr(m, k, v) for k, v in _SIMPLE.items()}
        return DDPMUNet(DDPMConfig(resolution=cfg.data.image_size, **fields))
    missing = [k for k in ("image_size", "num_channels", "num_res_blocks") if not hasattr(m, k)]
    if missing:
        raise ValueError(f"--config: model lacks {', '.join(missing)} (create_model needs them)")
    size = m.image_size
    heads = _get(m, "num_heads", _CREATE_MODEL)
    config = ADMConfig(in_channels=3, model_channels=m.num_channels,
                       out_channels=6 if _get(m, "learn_sigma", _CREATE_MODEL) else 3,
                       num_res_blocks=m.num_res_blocks,
                       attention_ds=tuple(size // int(r) for r in str(_get(m, "attention_resolutions",
                                                                               _CREATE_MODEL)).split(",")),
                       dropout=_get(m, "dropout", _CREATE_MODEL),
                       channel_mult=_channel_mult(_get(m, "channel_mult", _CREATE_MODEL), size),
                       num_classes=1000 if _get(m, "class_cond", _CREATE_MODEL) else None, num_heads=heads,
                       num_head_channels=_get(m, "num_head_channels", _CREATE_MODEL),
                       num_heads_upsample=_get(m, "num_heads_upsample", _CREATE_MODEL),
                       use_scale_shift_norm=_get(m, "use_scale_shift_norm", _CREATE_MODEL),
                       resblock_updown=_get(m, "resblock_updown", _CREATE_MODEL),
                       use_new_attention_order=_get(m, "use_new_attention_order", _CREATE_MODEL))
    return ADMUNet(config)


def build_classifier(cfg) -> ADMClassifier:
    """The config's classifier (create_classifier), randomly initialised as the original builds it."""
    c = getattr(cfg, "classifier", None)
    if c is None:
        raise ValueError("--config: the original guides a class-conditional model with its classifier: give the "
                         "config's classifier section (and its checkpoint)")
    size = _get(c, "image_size", _CREATE_CLASSIFIER)
    attention = str(_get(c, "classifier_attention_resolutions", _CREATE_CLASSIFIER)).split(",")
    return ADMClassifier(ClassifierConfig(
        image_size=size, model_channels=_get(c, "classifier_width", _CREATE_CLASSIFIER), out_channels=1000,
        num_res_blocks=_get(c, "classifier_depth", _CREATE_CLASSIFIER),
        attention_ds=tuple(size // int(r) for r in attention), channel_mult=_channel_mult("", size),
        num_head_channels=64, use_scale_shift_norm=_get(c, "classifier_use_scale_shift_norm", _CREATE_CLASSIFIER),
        resblock_updown=_get(c, "classifier_resblock_updown", _CREATE_CLASSIFIER),
        pool=_get(c, "classifier_pool", _CREATE_CLASSIFIER)))


#: the DDIM code's converted checkpoints (its get_ckpt_path), under EXP/logs/diffusion_models_converted/
_CONVERTED = {"LSUN_bedroom": "ema_diffusion_lsun_bedroom_model/model-2388000.ckpt",
              "LSUN_cat": "ema_diffusion_lsun_cat_model/model-1761000.ckpt",
              "LSUN_church_outdoor": "ema_diffusion_lsun_church_model/model-4432000.ckpt",
              "CIFAR10_": "ema_diffusion_cifar10_model/model-790000.ckpt"}


def checkpoint_paths(cfg, exp: str) -> Tuple[str, Optional[str]]:
    """(the model's checkpoint, the classifier's or None) where the original reads them under ``exp``."""
    s, logs = cfg.data.image_size, os.path.join(exp, "logs")
    if cfg.model.type == "simple":
        if cfg.data.dataset == "CelebA_HQ":
            return os.path.join(logs, "celeba", "celeba_hq.ckpt"), None
        key = f"{cfg.data.dataset}_{getattr(cfg.data, 'category', '')}"
        if key not in _CONVERTED:
            raise ValueError(f"data set {cfg.data.dataset}: the original has no checkpoint for a simple model of it")
        return os.path.join(logs, "diffusion_models_converted", _CONVERTED[key]), None
    if getattr(cfg.model, "class_cond", False):
        return (os.path.join(logs, "imagenet", f"{s}x{s}_diffusion.pt"),
                os.path.join(logs, "imagenet", f"{s}x{s}_classifier.pt"))
    return os.path.join(logs, "imagenet", "256x256_diffusion_uncond.pt"), None


def load_network(module: torch.nn.Module, path: str) -> torch.nn.Module:
    """``module`` with the weights at ``path`` (strict; see :func:`ddrm_fast.models.loader.load_weights`)."""
    if not os.path.lexists(path):
        raise ValueError(f"no checkpoint: the original reads {path}; put it there (nothing is downloaded), or give "
                         f"--model / --classifier")
    return load_weights(module, path)


def classifier_guidance(classifier: torch.nn.Module, scale: float) -> Callable:
    """The original's ``cond_fn(x, t, y)``: the gradient of log p(y | x, t) under the classifier, times ``scale``."""
    def cond_fn(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            log_probs = F.log_softmax(classifier(x_in, t), dim=-1)
            selected = log_probs[range(len(log_probs)), y.view(-1)]
            return torch.autograd.grad(selected.sum(), x_in)[0] * scale

    return cond_fn
