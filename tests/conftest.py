import json
import pathlib

import pytest
import torch

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
