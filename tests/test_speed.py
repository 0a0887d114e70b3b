"""The network's speed (ddrm_fast.speed): the automatic way equals float32 eager within its tolerance, --exact is the
float32 pipeline bit for bit, the command line says once what it runs, and the library's defaults change nothing."""
import copy
import inspect
import os

import numpy as np
import pytest
import torch
from PIL import Image

from ddrm_fast import batch, ddrm_sample, restoration, speed
from ddrm_fast.cli.main import main as cli
from ddrm_fast.imageio import read_image
from ddrm_fast.models import default_model
from ddrm_fast.models.adm import GroupNorm32

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "ddrm_fast", "data", "astronaut.png")


def test_the_librarys_defaults_are_float32_eager():
    params = inspect.signature(ddrm_sample).parameters
    assert (params["model_dtype"].default, params["channels_last"].default, params["compile"].default) == (
        None, False, False)
    s = restoration.Settings()
    assert (s.model_dtype, s.channels_last, s.compile) == (None, False, False)
    assert speed.EXACT.settings(s) == s
    model, _ = default_model()  # loading leaves the weights as they are: only the command line converts them
    conv = model.input_blocks[0][0].weight
    assert conv.is_contiguous() and not conv.is_contiguous(memory_format=torch.channels_last)


def test_half_precision_group_norm_keeps_the_float32_statistics():
    torch.manual_seed(0)
    norm = GroupNorm32(64)
    with torch.no_grad():
        norm.weight.normal_(), norm.bias.normal_()
    x = (3 * torch.randn(2, 64, 16, 16) + 1).to(torch.bfloat16)
    want = torch.nn.functional.group_norm(x.float(), 32, norm.weight, norm.bias, norm.eps).to(torch.bfloat16)
    with torch.no_grad():
        got = norm(x)
    assert got.dtype == torch.bfloat16
    assert (got.float() - want.float()).abs().max() <= 2 ** -7 * want.float().abs().max()  # one bfloat16 rounding


@pytest.mark.parametrize("task", ["sr4", "deno", "inp"])
def test_the_automatic_way_stays_within_its_tolerance_of_float32(task):
    """The tolerance speed.auto is chosen to: within 0.05 dB PSNR of float32 eager (measured on the held-out photos;
    here on a 128x128 crop, 10 steps)."""
    model, betas = default_model()
    clean = read_image(EXAMPLE)[:, 64:192, 64:192]
    m = restoration.measure(task, clean, sigma_y=0.05, seed=0)
    psnr = {}
    for way in (speed.EXACT, speed.auto(torch.device("cpu"), task)):
        settings = way.settings(restoration.Settings(steps=10, clip_x0=True))
        x = restoration.restore(way.prepare(copy.deepcopy(model)), betas, [m], settings)[0]
        psnr[way.name] = restoration.score(m, x).psnr
    assert abs(psnr[speed.auto(torch.device("cpu"), task).name] - psnr["fp32"]) <= 0.05, psnr


def test_precise_tasks_keep_float32():
    for task in speed.PRECISE_TASKS:
        assert speed.auto(torch.device("cpu"), task).model_dtype is None
    assert speed.auto(torch.device("cpu"), "sr4").model_dtype == (torch.bfloat16 if speed.cpu_has_bf16() else None)


def test_exact_is_the_float32_pipeline_bit_for_bit_and_the_way_is_said_once(tmp_path, capsys):
    path = tmp_path / "face.png"
    Image.open(EXAMPLE).crop((88, 40, 120, 72)).save(path)
    assert cli(["restore", str(path), "--task", "sr4", "--steps", "3", "-o", str(tmp_path / "exact"),
                "--no-progress", "--exact"]) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("network on")] == [
        "network on cpu: float32, eager (--exact)"]
    model, betas = default_model()
    m = restoration.measure("sr4", read_image(str(path)), sigma_y=0.05, seed=0)
    x = restoration.restore(model, betas, [m], restoration.Settings(steps=3, clip_x0=True))[0]
    from ddrm_fast.imageio import to_uint8

    assert np.array_equal(np.asarray(Image.open(tmp_path / "exact" / "face_sr4_restored.png")), to_uint8(x))
    assert cli(["restore", str(path), "--task", "sr4", "--steps", "3", "-o", str(tmp_path / "auto"),
                "--no-progress"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("network on")]
    assert lines == [f"network on cpu: {speed.auto(torch.device('cpu'), 'sr4').describe()} (automatic; --exact "
                     f"for float32 eager)"]


def test_a_folder_job_chooses_the_way_per_batchs_task(tmp_path):
    (tmp_path / "in").mkdir()
    im = Image.open(EXAMPLE)
    for i in range(2):
        im.crop((40 * i, 40, 40 * i + 32, 72)).save(tmp_path / "in" / f"img{i}.png")
    (tmp_path / "m.csv").write_text("name,task\nimg0.png,sr4\nimg1.png,color\n")
    seen = {}

    def sampler(model, y, op, sigma, **kw):
        seen[type(op).__name__] = kw["model_dtype"]
        return ddrm_sample(model, y, op, sigma, **kw)

    model, betas = default_model()
    spec = batch.FolderJob(str(tmp_path / "in"), str(tmp_path / "out"), "deno", manifest=str(tmp_path / "m.csv"),
                           num_workers=0, progress=False, settings=restoration.Settings(steps=2),
                           network_per_task=True)
    assert batch.restore_dir(model, betas, spec, sampler)["ok"] == 2
    assert seen == {"SuperRes": speed.auto(torch.device("cpu"), "sr4").model_dtype, "Colorize": None}
