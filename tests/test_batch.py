"""Directory restoration: per-image operators, batch/worker/rank independence, resume after SIGKILL, bad items,
OOM splitting, and a 2-process torchrun (gloo) run."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from ddrm_fast import batch
from ddrm_fast.cli.main import main as cli
from ddrm_fast.models import GaussianPriorEps
from ddrm_fast.sampler import ddrm_sample

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "ddrm_fast", "data", "astronaut.png")
MODEL = GaussianPriorEps(std=0.5)  # exact, cheap and batch-invariant: isolates the job logic
BETAS = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)


def _dataset(folder, n=5, size=32):
    folder.mkdir(exist_ok=True)
    im = Image.open(EXAMPLE)
    for i in range(n):
        left, top = (i * 37) % (256 - size), (16 + i * 9) % (256 - size)  # different parts of the 256x256 photo
        im.crop((left, top, left + size, top + size)).save(folder / f"img{i}.png")
    return folder


def _pixels(path):
    return np.asarray(Image.open(path)).astype(int)


def _report(out, name="report.jsonl"):
    return [json.loads(line) for line in open(os.path.join(out, name))]


def _run(inp, out, **kw):
    args = dict(task="sr4", sigma_y=0.05, steps=5, batch_size=2, num_workers=0, progress=False)
    args.update(kw)
    return batch.restore_dir(MODEL, BETAS, str(inp), str(out), **args)


def test_results_do_not_depend_on_batch_size_or_workers(tmp_path):
    inp = _dataset(tmp_path / "in", n=5)
    _run(inp, tmp_path / "b1", batch_size=1)
    _run(inp, tmp_path / "b4", batch_size=4, num_workers=2)
    for i in range(5):
        a, b = _pixels(tmp_path / "b1" / f"img{i}.png"), _pixels(tmp_path / "b4" / f"img{i}.png")
        assert np.abs(a - b).max() <= 1, i  # float rounding may flip an 8-bit level, nothing more
    assert {r["batch"] for r in _report(tmp_path / "b4")} == {4, 1}


def test_one_image_equals_a_direct_sampler_call(tmp_path):
    # the job's per-image stream: mask, measurement noise, then the sampler's noise, all from the image's seed
    inp = _dataset(tmp_path / "in", n=3)
    _run(inp, tmp_path / "out", task="deno", batch_size=3)
    x = torch.from_numpy(_pixels(inp / "img1.png")).permute(2, 0, 1).float()[None] / 127.5 - 1
    g = torch.Generator().manual_seed(batch.default_seed("img1.png"))
    from ddrm_fast import operators as O

    op = O.Denoise((3, 32, 32))
    y = op.H(x) + 0.1 * torch.randn(x.shape, generator=g)
    want = ddrm_sample(MODEL, y, op, torch.tensor([0.1]), steps=5, schedule=BETAS.float(), generator=[g])[0]
    got = _pixels(tmp_path / "out" / "img1.png")
    want = ((want.clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy()
    assert np.abs(got - want).max() <= 1


def test_per_image_masks_sigma_and_noise_maps(tmp_path):
    inp = _dataset(tmp_path / "in", n=3)
    masks = tmp_path / "masks"
    masks.mkdir()
    for i in range(3):
        m = np.zeros((32, 32), np.uint8)
        m[:, : 8 * (i + 1)] = 255  # a different observed band per image
        Image.fromarray(m).save(masks / f"img{i}.png")
    np.save(tmp_path / "map.npy", np.linspace(0.0, 0.1, 32, dtype=np.float32)[None, :].repeat(32, 0))
    (tmp_path / "manifest.csv").write_text("name,task,sigma_y,seed,noise_map\nimg0.png,inp,0,7,\n"
                                           "img1,inp,0,,\nimg2.png,inp,,,map.npy\n")
    stats = _run(inp, tmp_path / "out", task="deno", sigma_y=0.3, masks_dir=str(masks),
                 manifest=str(tmp_path / "manifest.csv"), batch_size=3)
    assert stats["ok"] == 3 and stats["failed"] == 0
    rep = {r["name"]: r for r in _report(tmp_path / "out")}
    assert rep["img0.png"]["seed"] == 7 and rep["img1.png"]["seed"] == batch.default_seed("img1.png")
    assert rep["img2.png"]["sigma_y"] == 0.3 and {r["task"] for r in rep.values()} == {"inp"}
    for i in (0, 1):
        # sigma_y = 0: observed pixels come back close to the measurement, the missing ones are filled from the prior
        err = np.abs(_pixels(tmp_path / "out" / f"img{i}.png") - _pixels(inp / f"img{i}.png")).mean(axis=(0, 2))
        band = 8 * (i + 1)
        assert err[:band].max() < 3 and err[band:].min() > 3 * err[:band].max()
    # img2 is all observed (its mask is the widest band, 24 columns) with noise growing from 0 (column 0) to
    # 0.1 (column 31): the error follows the noise map
    err = np.abs(_pixels(tmp_path / "out" / "img2.png") - _pixels(inp / "img2.png")).mean(axis=(0, 2))
    assert err[:2].mean() < 3 and err[16:24].mean() > 2 * err[:2].mean()


def test_bad_items_are_reported_and_the_rest_restored(tmp_path, capsys):
    inp = _dataset(tmp_path / "in", n=2)
    (inp / "corrupt.png").write_bytes(open(inp / "img0.png", "rb").read()[:100])
    Image.new("L", (32, 32)).save(inp / "gray.png")
    Image.new("RGB", (30, 32)).save(inp / "odd.png")
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.new("L", (16, 16), 255).save(masks / "img1.png")
    Image.new("L", (32, 32), 255).save(masks / "img0.png")
    (tmp_path / "m.json").write_text(json.dumps([{"name": "img1.png", "task": "inp"}, {"name": "ghost.png"}]))
    code = cli(["restore", "--input-dir", str(inp), "-o", str(tmp_path / "out"), "--task", "sr4", "--steps", "2",
                "--masks-dir", str(masks), "--manifest", str(tmp_path / "m.json"), "--num-workers", "0",
                "--no-progress", "--model", _tiny_model(tmp_path)])
    assert code == 1
    rep = {r["name"]: r for r in _report(tmp_path / "out")}
    assert rep["img0.png"]["status"] == "ok" and os.path.exists(tmp_path / "out" / "img0.png")
    errors = {n: r["error"] for n, r in rep.items() if r["status"] == "error"}
    assert set(errors) == {"corrupt.png", "gray.png", "odd.png", "img1.png", "ghost.png"}
    assert "mode L" in errors["gray.png"] and "not divisible by the ratio 4" in errors["odd.png"]
    assert "16x16" in errors["img1.png"] and "not found" in errors["ghost.png"]
    err = capsys.readouterr().err
    assert all(f"ddrm-fast: {n}:" in err for n in errors)
    summary = json.load(open(tmp_path / "out" / "summary.json"))
    assert summary["images"] == 1 and summary["failures"] == 5


def test_out_of_memory_splits_the_batch_down_to_one(tmp_path):
    inp = _dataset(tmp_path / "in", n=5)
    calls = []

    def sampler(model, y, *a, **kw):
        calls.append(y.shape[0])
        if y.shape[0] > 1 or len(calls) == 99:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return ddrm_sample(model, y, *a, **kw)

    _run(inp, tmp_path / "split", batch_size=4, sampler=sampler)
    _run(inp, tmp_path / "plain", batch_size=4)
    assert calls[:3] == [4, 2, 1]  # 4 -> 2 + 2 -> 1 + 1 ...
    for i in range(5):
        assert np.abs(_pixels(tmp_path / "split" / f"img{i}.png") - _pixels(tmp_path / "plain" / f"img{i}.png")).max() <= 1

    def always(model, y, *a, **kw):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    stats = _run(inp, tmp_path / "never", batch_size=2, sampler=always)
    assert stats["failed"] == 5
    assert {r["error"] for r in _report(tmp_path / "never")} == {"out of memory even alone"}


def test_rerun_skips_finished_images(tmp_path):
    inp = _dataset(tmp_path / "in", n=4)
    _run(inp, tmp_path / "out")
    os.remove(tmp_path / "out" / "img2.png")
    stats = _run(inp, tmp_path / "out")
    assert stats["ok"] == 1 and stats["todo"] == 1
    assert sorted(r["name"] for r in _report(tmp_path / "out")) == ["img0.png", "img1.png", "img2.png", "img2.png",
                                                                   "img3.png"]


def _tiny_model(tmp_path):
    """A small random ADM saved to disk, for the subprocess runs (fast to load and run)."""
    path = tmp_path / "tiny.safetensors"
    if not path.exists():
        from ddrm_fast.models import ADMUNet, save

        torch.manual_seed(0)
        save(ADMUNet(dict(model_channels=32, num_res_blocks=1, channel_mult=(1, 2), attention_ds=())), path, BETAS)
    return str(path)


def _cmd(inp, out, model, *extra):
    return [sys.executable, "-m", "ddrm_fast", "restore", "--input-dir", str(inp), "-o", str(out), "--task", "sr4",
            "--steps", "20", "--batch-size", "1", "--num-workers", "1", "--no-progress", "--model", model, *extra]


@pytest.mark.parametrize("kill_after", [1, 4])
def test_sigkill_then_rerun_completes_every_image_once(tmp_path, kill_after):
    inp = _dataset(tmp_path / "in", n=12)
    out = tmp_path / "out"
    model = _tiny_model(tmp_path)
    proc = subprocess.Popen(_cmd(inp, out, model), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        done = [n for n in os.listdir(out) if n.startswith("img") and ".tmp" not in n] if out.exists() else []
        if len(done) >= kill_after:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the job finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    subprocess.run(_cmd(inp, out, model), check=True, capture_output=True)
    assert 0 < json.load(open(out / "summary.json"))["restored_this_run"] < 12  # the rerun did only the rest
    names = sorted(os.listdir(out))
    assert names == sorted([f"img{i}.png" for i in range(12)] + ["report.jsonl", "summary.json"])  # no temporaries left
    ok = [r["name"] for r in _report(out) if r["status"] == "ok"]
    assert sorted(ok) == sorted(f"img{i}.png" for i in range(12))  # each image reported exactly once
    assert json.load(open(out / "summary.json"))["images"] == 12


def test_torchrun_two_processes_shard_the_job(tmp_path):
    inp = _dataset(tmp_path / "in", n=5)
    model = _tiny_model(tmp_path)
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "ddrm_fast"]
    p = subprocess.run(run + _cmd(inp, tmp_path / "dist", model)[3:], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    r0 = [r["name"] for r in _report(tmp_path / "dist", "report.rank0.jsonl")]
    r1 = [r["name"] for r in _report(tmp_path / "dist", "report.rank1.jsonl")]
    assert sorted(r0 + r1) == [f"img{i}.png" for i in range(5)] and not set(r0) & set(r1)
    assert r0 == ["img0.png", "img2.png", "img4.png"]
    assert json.load(open(tmp_path / "dist" / "summary.json"))["images"] == 5
    assert "5 images restored" in p.stdout
    # the same images as one process: results do not depend on the rank count
    subprocess.run(_cmd(inp, tmp_path / "single", model), check=True, capture_output=True)
    for i in range(5):
        a, b = _pixels(tmp_path / "dist" / f"img{i}.png"), _pixels(tmp_path / "single" / f"img{i}.png")
        assert np.abs(a - b).max() <= 1


@pytest.mark.parametrize("speed", [[], ["--noise", "philox", "--dtype", "bfloat16", "--channels-last"]])
def test_a_folder_job_equals_the_one_image_command_with_the_same_seed(tmp_path, speed):
    inp = _dataset(tmp_path / "in", n=3)
    model = _tiny_model(tmp_path)
    common = ["--task", "inp", "--steps", "4", "--no-progress", "--model", model] + speed
    assert cli(["restore", "--input-dir", str(inp), "-o", str(tmp_path / "dir"), "--batch-size", "3",
                "--num-workers", "0"] + common) == 0
    seed = str(batch.default_seed("img2.png"))
    assert cli(["restore", str(inp / "img2.png"), "-o", str(tmp_path / "one"), "--seed", seed] + common) == 0
    a = _pixels(tmp_path / "dir" / "img2.png")
    b = _pixels(tmp_path / "one" / "img2_inp_restored.png")
    assert np.abs(a - b).max() <= 1


def test_speed_options_reach_the_sampler(tmp_path):
    # what the command's speed flags turn into, on both paths (one image, a folder)
    from ddrm_fast.cli import restore
    from ddrm_fast.cli.main import _parser

    seen = []

    def sampler(*args, **kw):
        seen.append({k: kw[k] for k in ("noise", "model_dtype", "channels_last", "compile")})
        return ddrm_sample(*args, **kw)

    inp = _dataset(tmp_path / "in", n=2)
    opts = {"noise": "philox", "model_dtype": torch.bfloat16, "channels_last": True, "compile": False}
    _run(inp, tmp_path / "out", sampler=sampler, sampler_options=opts)
    assert seen == [opts]
    parse = _parser().parse_args
    args = parse(["restore", "x.png", "-o", "o", "--task", "sr4", "--dtype", "float16", "--compile", "--compile-mode",
                  "max-autotune-no-cudagraphs", "--noise", "philox"])
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert restore.sampler_options(args, cpu) == {"noise": "philox", "model_dtype": torch.float16,
                                                  "channels_last": False, "compile": "max-autotune-no-cudagraphs",
                                                  "cuda_graph": False}
    args = parse(["restore", "x.png", "-o", "o", "--task", "sr4"])
    assert restore.sampler_options(args, cpu) == {"noise": "torch", "model_dtype": None, "channels_last": False,
                                                  "compile": False, "cuda_graph": False}
    args = parse(["restore", "x.png", "-o", "o", "--task", "sr4", "--cuda-graph"])
    assert restore.sampler_options(args, cuda)["cuda_graph"] is True
    with pytest.raises(ValueError, match="--cuda-graph needs a CUDA device"):
        restore.sampler_options(args, cpu)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_a_graphed_folder_job_equals_the_eager_one(tmp_path):
    # per-image masks: every batch a new inpainting operator, all replaying one captured graph
    inp = _dataset(tmp_path / "in", n=5)
    model = _tiny_model(tmp_path)
    common = ["restore", "--input-dir", str(inp), "--task", "inp", "--steps", "4", "--no-progress", "--model", model,
              "--batch-size", "2", "--num-workers", "0", "--noise", "philox", "--device", "cuda"]
    assert cli(common + ["-o", str(tmp_path / "eager")]) == 0
    assert cli(common + ["-o", str(tmp_path / "graph"), "--cuda-graph"]) == 0
    for i in range(5):
        a, b = _pixels(tmp_path / "eager" / f"img{i}.png"), _pixels(tmp_path / "graph" / f"img{i}.png")
        assert np.abs(a - b).max() <= 1, i
