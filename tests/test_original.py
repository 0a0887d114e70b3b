"""`ddrm-fast original`: the original runner's own command lines reproduce the files the original wrote
(tests/data/runner, the original's outputs on small checkpoints of both model families and a classifier-guided
config), on the CPU and the reference backends; and the protocol written out by hand, with the embedded model, over
a folder of the user's."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ddrm_fast import compat
from ddrm_fast.models import ADMUNet, default_model, save
from ddrm_fast.schedules import linear_betas

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "ddrm_fast", "data", "astronaut.png")
CONFIG = """data:
    dataset: "ImageNet"
    image_size: 32
    channels: 3
    rescaled: true
model:
    type: "openai"
    num_head_channels: 32
    class_cond: {cond}
diffusion:
    beta_schedule: linear
    beta_start: 0.0001
    beta_end: 0.02
    num_diffusion_timesteps: 1000
sampling:
    batch_size: 2
"""


@pytest.fixture
def work(tmp_path):
    (tmp_path / "in").mkdir()
    im = Image.open(EXAMPLE)
    for i in range(3):
        im.crop((40 * i + 20, 60, 40 * i + 52, 92)).save(tmp_path / "in" / f"img{i}.png")
    (tmp_path / "cfg.yml").write_text(CONFIG.format(cond="false"))
    return tmp_path


def _original(tmp_path, *args):
    p = subprocess.run([sys.executable, "-m", "ddrm_fast", "original", "--config", str(tmp_path / "cfg.yml"),
                        "--input-dir", str(tmp_path / "in"), "--exp", str(tmp_path / "exp"), "--no-progress",
                        *map(str, args)], capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def _by_hand(tmp_path, deg, sigma_0, seed, steps, model):
    """The original runner's protocol written out (runners/diffusion.py, sample_sequence), on compat's reference
    loop: the images in the order of its DataLoader seeded with ``seed``, (restored uint8 images by index, mean
    PSNR)."""
    torch.manual_seed(seed)
    if deg == "inp":
        missing_r = torch.randperm(32**2)[: 32**2 // 2].long() * 3
        H = compat.Inpainting(3, 32, torch.cat([missing_r, missing_r + 1, missing_r + 2]), "cpu")
    else:
        H = compat.SuperResolution(3, 32, 4, "cpu")
    names = sorted(os.listdir(tmp_path / "in"))
    order = torch.utils.data.DataLoader(list(range(len(names))), batch_size=2, shuffle=True,
                                        generator=torch.Generator().manual_seed(seed))
    out, psnrs, idx = {}, [], 0
    for batch in order:
        x = torch.stack([torch.from_numpy(np.asarray(Image.open(tmp_path / "in" / names[i]).convert("RGB")).copy())
                         .permute(2, 0, 1).float() / 255 for i in batch]) * 2 - 1
        y_0 = H.H(x)
        y_0 = y_0 + 2 * sigma_0 * torch.randn_like(y_0)
        x_T = torch.randn(*x.shape)
        xs, _ = compat.efficient_generalized_steps(x_T, range(0, 1000, 1000 // steps), model, linear_betas(), H, y_0,
                                                   2 * sigma_0, etaB=1.0, etaA=0.85, etaC=0.85, backend="reference")
        for j in range(x.shape[0]):
            res = ((xs[-1][j] + 1) / 2).clamp(0, 1)
            out[idx + j] = res.mul(255).add(0.5).clamp(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()
            psnrs.append(float(10 * torch.log10(1 / torch.mean((res - (x[j] + 1) / 2) ** 2))))
        idx += x.shape[0]
    return out, sum(psnrs) / len(psnrs)


@pytest.mark.parametrize("deg", ["sr4", "inp"])
def test_the_runner_reproduces_the_original_protocol_with_the_embedded_model(work, deg):
    code, stdout, stderr = _original(work, "--deg", deg, "--sigma_0", 0.05, "--timesteps", 4, "--seed", 7,
                                     "--model", "embedded")
    assert code == 0, stderr
    want, mean_psnr = _by_hand(work, deg, 0.05, 7, 4, default_model().model)
    folder = work / "exp" / "image_samples" / "images"
    assert sorted(os.listdir(folder)) == sorted([f"{k}_{i}.png" for i in range(3) for k in ("orig", "y0")]
                                                + [f"{i}_-1.png" for i in range(3)])
    for i, pixels in want.items():
        got = np.asarray(Image.open(folder / f"{i}_-1.png")).astype(int)
        assert np.abs(got - pixels.astype(int)).max() <= 1, i  # the fused loop against the reference loop
    assert f"Total Average PSNR: {mean_psnr:.2f}" in stdout and "Number of samples: 3" in stdout


def test_a_class_conditional_model_without_its_classifier_is_refused(work):
    torch.manual_seed(0)
    adm = ADMUNet(dict(model_channels=32, num_res_blocks=1, channel_mult=(1, 2), attention_ds=(), num_classes=3,
                       num_head_channels=32)).eval()
    save(adm, work / "cond.safetensors", linear_betas())
    (work / "cfg.yml").write_text(CONFIG.format(cond="true"))
    code, _, stderr = _original(work, "--deg", "sr4", "--sigma_0", 0.05, "--timesteps", 3, "--model",
                                work / "cond.safetensors")
    assert code == 2 and "the original guides a class-conditional model with its classifier" in stderr, stderr


def test_the_runner_touches_only_its_own_files(work):
    folder = work / "exp" / "image_samples" / "images"
    folder.mkdir(parents=True)
    Image.new("RGB", (8, 8), "red").save(folder / "orig_1.png")  # the user's file, with a name the run would write
    code, stdout, stderr = _original(work, "--deg", "sr4", "--sigma_0", 0.05, "--timesteps", 2, "--model", "embedded")
    assert code == 2 and stderr.splitlines() == [f"ddrm-fast: error: {folder / 'orig_1.png'} exists and was not "
                                                 f"written by ddrm-fast; it is not overwritten (choose another -i "
                                                 f"or --exp)"]
    assert os.listdir(folder) == ["orig_1.png"]
    for args, words in ((["--deg", "sr3x"], "--deg 'sr3x': not a degradation of the original runner"),
                        (["--deg", "inp_lolcat"], "--deg inp_lolcat needs its mask file (--mask)"),
                        (["--deg", "sr4", "--model", work / "none.pt"], "model file not found"),
                        (["--deg", "sr4"], "the model section does not say what network to build")):
        code, _, stderr = _original(work, *args, "--sigma_0", 0.05, "-i", "other")
        assert code == 2 and len(stderr.splitlines()) == 1 and words in stderr, (args, stderr)


# --- the original's own command lines against the files the original wrote ---------------------------------------
RUNNER = os.path.join(os.path.dirname(__file__), "data", "runner")
RUNS = json.load(open(os.path.join(RUNNER, "manifest.json")))["runs"]


def _fixture_copy(dest):
    """The fixture folder as the original found it: configs, checkpoints, data sets, without the outputs."""
    import shutil

    def outputs(folder, names):  # the original's printed logs and written images are what the test compares with
        return [n for n in names if (folder == RUNNER and n == "logs")
                or (folder == os.path.join(RUNNER, "exp") and n == "image_samples")]

    shutil.copytree(RUNNER, dest, ignore=outputs)
    return dest


def _pixels(path):
    return np.asarray(Image.open(path)).astype(int)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_the_original_command_lines_write_the_original_files(tmp_path, backend):
    """Each run of the fixture, its argv unchanged (no --input-dir, no --model: the data sets, checkpoints and
    classifier are read where the original reads them): the same file set, orig_* and y0_* equal to the pixel, the
    restorations within one gray level, the printed PSNR within 0.01 dB."""
    from concurrent.futures import ThreadPoolExecutor

    work = _fixture_copy(tmp_path / "runner")

    def run(r):
        p = subprocess.run([sys.executable, "-m", "ddrm_fast", "original", *r["argv"], "--backend", backend,
                            "--no-progress"], cwd=work, capture_output=True, text=True, timeout=900,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
        return r, p

    with ThreadPoolExecutor(2) as pool:  # two runs at a time, a core each
        results = list(pool.map(run, RUNS))
    for r, p in results:
        assert p.returncode == 0 and "Traceback" not in p.stderr, (r["name"], p.stderr[-2000:])
        ours, theirs = work / r["output_dir"], os.path.join(RUNNER, r["output_dir"])
        assert sorted(os.listdir(ours)) == sorted(r["files_sha256"]), r["name"]
        for name in r["files_sha256"]:
            diff = np.abs(_pixels(ours / name) - _pixels(os.path.join(theirs, name))).max()
            assert diff <= (1 if name.endswith("_-1.png") else 0), (r["name"], name, diff)
        printed = [line for line in p.stdout.splitlines() if line.startswith("Total Average PSNR: ")]
        assert len(printed) == 1 and abs(float(printed[0].split(": ")[1]) - r["total_average_psnr"]) <= 0.01, (
            r["name"], printed)
        assert f"Number of samples: {r['number_of_samples']}" in p.stdout
