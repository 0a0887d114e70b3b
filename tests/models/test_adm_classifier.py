"""The ADM classifier (guided-diffusion's EncoderUNetModel) and the original runner's networks built from a config:
against guided-diffusion's own code (the oracle, from PyPI's guided-diffusion-sdk), they have the same state_dict
layout, the same outputs, and draw the same random initialisation from torch's generator."""
import types

import pytest
import torch

from ddrm_fast.compat import networks
from ddrm_fast.models.adm_classifier import ADMClassifier

CLASSIFIER = dict(image_size=64, classifier_use_fp16=False, classifier_width=32, classifier_depth=1,
                  classifier_attention_resolutions="8", classifier_use_scale_shift_norm=True,
                  classifier_resblock_updown=True)


def _ns(**sections):
    return types.SimpleNamespace(**{k: types.SimpleNamespace(**v) for k, v in sections.items()})


@pytest.mark.parametrize("pool", ["attention", "adaptive"])
def test_the_classifier_equals_guided_diffusions_and_draws_what_it_draws(pool):
    script_util = pytest.importorskip("guided_diffusion.script_util")
    torch.manual_seed(1234)
    ref = script_util.create_classifier(**CLASSIFIER, classifier_pool=pool)
    after_ref = torch.rand(4)
    torch.manual_seed(1234)
    ours = networks.build_classifier(_ns(classifier=dict(CLASSIFIER, classifier_pool=pool, classifier_scale=1.0)))
    torch.testing.assert_close(torch.rand(4), after_ref, rtol=0, atol=0)  # the same draws, in the same order
    assert isinstance(ours, ADMClassifier)
    assert list(ours.state_dict()) == list(ref.state_dict())
    for k, v in ref.state_dict().items():  # the same initial weights, zeroed branches included
        assert torch.equal(ours.state_dict()[k], v), k
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        ours.load_state_dict(ref.state_dict(), strict=True)
        x, t = torch.randn(2, 3, 64, 64), torch.tensor([3.0, 800.0])
        torch.testing.assert_close(ours(x, t), ref(x, t), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("class_cond", [False, True])
def test_the_runners_adm_is_create_models_and_draws_what_it_draws(class_cond):
    script_util = pytest.importorskip("guided_diffusion.script_util")
    model = dict(image_size=64, num_channels=32, num_res_blocks=1, channel_mult="1,1,2", learn_sigma=True,
                 class_cond=class_cond, attention_resolutions="16", num_heads=4, num_head_channels=32,
                 num_heads_upsample=-1, use_scale_shift_norm=True, dropout=0.0, resblock_updown=True, use_fp16=False,
                 use_new_attention_order=False)
    torch.manual_seed(1234)
    ref = script_util.create_model(**model)
    after_ref = torch.rand(4)
    torch.manual_seed(1234)
    # the keys create_model ignores, as the original's configs carry them
    ours = networks.build_model(_ns(model=dict(model, type="openai", in_channels=3, out_channels=3,
                                               var_type="fixedsmall"), data=dict(image_size=64)))
    torch.testing.assert_close(torch.rand(4), after_ref, rtol=0, atol=0)
    for k, v in ref.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k
    assert list(ours.state_dict()) == list(ref.state_dict())


def test_config_keys_the_drop_in_cannot_honour_are_refused_by_name():
    base = dict(model=dict(type="openai", image_size=64, num_channels=32, num_res_blocks=1),
                data=dict(dataset="ImageNet", image_size=64, channels=3, rescaled=True),
                diffusion=dict(beta_schedule="linear", beta_start=1e-4, beta_end=0.02, num_diffusion_timesteps=1000),
                sampling=dict(batch_size=2))
    networks.check_config(_ns(**base), "c.yml")
    for section, key, value, words in (("model", "use_spectral_norm", True, "model.use_spectral_norm is not a key"),
                                       ("data", "logit_transform", True, "data.logit_transform is not applied"),
                                       ("data", "rescaled", False, "data.rescaled false is not applied"),
                                       ("sampling", "speed", 2, "sampling.speed is not a key")):
        cfg = {k: dict(v) for k, v in base.items()}
        cfg[section][key] = value
        with pytest.raises(ValueError, match=words):
            networks.check_config(_ns(**cfg), "c.yml")
