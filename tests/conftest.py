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


def _mount_tmpfs(path, options):
    """Mount a tmpfs at ``path`` (created), or skip the test where this process may not mount (not root, a
    container without the capability): these tests want a real file system's refusal, not a simulated one."""
    import subprocess

    path.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({p.stderr.strip() or p.returncode})")
    return path


@pytest.fixture
def small_disk(tmp_path):
    """A 300 KB file system (a tmpfs) of its own: writes there run out of space as on a full disk."""
    import subprocess

    path = _mount_tmpfs(tmp_path / "small_disk", "size=300k")
    yield path
    subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def read_only_disk(tmp_path):
    """A read-only file system (a tmpfs mounted ro): nothing can be created in it, whoever the user is."""
    import subprocess

    path = _mount_tmpfs(tmp_path / "read_only", "ro,size=64k")
    yield path
    subprocess.run(["umount", "-l", str(path)], check=False)
