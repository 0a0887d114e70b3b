import json
import pathlib

import pytest
import torch

from ddrm_fast import compat

DATA = pathlib.Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def golden():
    """The original DDRM's outputs (tests/data, copied from the project's shared golden vectors)."""
    tensors = torch.load(DATA / "ddrm_reference.pt", weights_only=True)
    cases = json.loads((DATA / "ddrm_reference.json").read_text())
    return tensors, cases


def golden_eps_model(betas):
    """The deterministic stand-in network the golden vectors were made with (tests/data README protocol)."""
    abar = (1 - betas).cumprod(0)

    def eps_model(x, t):
        a = abar.to(x.device)[t.long()].view(-1, 1, 1, 1)
        return (1 - a).sqrt() * x / (0.25 * a + 1 - a) + 0.02 * torch.tanh(3 * x) * (1 - a)

    return eps_model


GOLDEN_CASES = ["deno_s0.0", "deno_s0.1", "inp_s0.0", "inp_s0.1", "sr4_s0.0", "sr4_s0.1", "color_s0.0", "color_s0.1",
         "deblur_uni_s0.0", "deblur_uni_s0.1"]


def golden_case(golden, name):
    """(metadata, tensors) of golden case ``name``."""
    tensors, cases = golden
    meta = next(c for c in cases if c["name"] == name)
    return meta, {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith(name + "/")}


def golden_operator(meta, data, device="cpu"):
    """The original's operator of a golden case (ddrm_fast.compat's class)."""
    deg = meta["deg"]
    if deg == "deno":
        return compat.Denoising(3, 32, device)
    if deg == "inp":
        return compat.Inpainting(3, 32, data["missing_indices"].to(device), device)
    if deg == "sr4":
        return compat.SuperResolution(3, 32, 4, device)
    if deg == "color":
        return compat.Colorization(32, device)
    if deg == "deblur_uni":
        return compat.Deblurring(data["kernel"].to(device), 3, 32, device)
    raise AssertionError(deg)


def golden_x_init(meta):
    """The initial draw of a golden case, as the protocol makes it."""
    torch.manual_seed(meta["sampler_seed"])
    return torch.randn(meta["batch"], 3, 32, 32)
