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
from ddrm_fast.restoration import Settings
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


def _run(inp, out, sampler=None, sampler_options=None, steps=5, **kw):
    args = dict(task="sr4", sigma_y=0.05, batch_size=2, num_workers=0, progress=False)
    args.update(kw)
    settings = Settings(steps=steps, **(sampler_options or {}))
    return batch.restore_dir(MODEL, BETAS, batch.FolderJob(str(inp), str(out), settings=settings, **args), sampler)


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
        done = [n for n in os.listdir(out) if n.startswith("img")] if out.exists() else []  # temporaries are hidden
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
    from ddrm_fast.cli.main import build_parser

    seen = []

    def sampler(*args, **kw):
        seen.append({k: kw[k] for k in ("noise", "model_dtype", "channels_last", "compile", "clip_x0")})
        return ddrm_sample(*args, **kw)

    inp = _dataset(tmp_path / "in", n=2)
    opts = {"noise": "philox", "model_dtype": torch.bfloat16, "channels_last": True, "compile": False, "clip_x0": True}
    _run(inp, tmp_path / "out", sampler=sampler, sampler_options=opts)
    assert seen == [opts]
    parse = build_parser().parse_args
    args = parse(["restore", "x.png", "-o", "o", "--task", "sr4", "--dtype", "float16", "--compile", "--compile-mode",
                  "max-autotune-no-cudagraphs", "--noise", "philox"])
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert restore.sampler_options(args, cpu) == {"noise": "philox", "model_dtype": torch.float16,
                                                  "channels_last": False, "compile": "max-autotune-no-cudagraphs",
                                                  "cuda_graph": False, "clip_x0": True}
    args = parse(["restore", "x.png", "-o", "o", "--task", "sr4", "--no-clip-x0", "--exact"])
    assert restore.sampler_options(args, cpu) == {"noise": "torch", "model_dtype": None, "channels_last": False,
                                                  "compile": False, "cuda_graph": False, "clip_x0": False}
    # without flags: the automatic choice for the device (bfloat16 where the CPU has the instructions)
    from ddrm_fast import speed

    args = parse(["restore", "x.png", "-o", "o", "--task", "sr4"])
    auto = speed.auto(cpu)
    assert auto.name == ("bf16_cl" if speed.cpu_has_bf16() else "fp32_cl")
    assert restore.sampler_options(args, cpu) == {"noise": "torch", "model_dtype": auto.model_dtype,
                                                  "channels_last": True, "compile": False, "cuda_graph": False,
                                                  "clip_x0": True}
    with pytest.raises(ValueError, match="--exact runs the network in float32, eager: drop --dtype"):
        restore.sampler_options(parse(["restore", "x.png", "-o", "o", "--task", "sr4", "--exact", "--dtype",
                                       "bfloat16"]), cpu)
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


# --- the output folder is the user's; bad items of every kind; concurrent runs -------------------------------------
def _ddrm(*args, timeout=120):
    """A real `ddrm-fast` process: (exit code, stdout, stderr)."""
    p = subprocess.run([sys.executable, "-m", "ddrm_fast", *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return p.returncode, p.stdout, p.stderr


def _snapshot(folder):
    """Every file under ``folder``: relative path -> bytes (folders -> None)."""
    out = {}
    for root, dirs, names in os.walk(folder):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), folder)] = None
        for n in names:
            p = os.path.join(root, n)
            out[os.path.relpath(p, folder)] = None if not os.path.isfile(p) else open(p, "rb").read()
    return out


def _user_files(out):
    """An output folder that already holds the user's own files, some with '.tmp' in their names."""
    out.mkdir()
    (out / "thesis.tmp.docx").write_bytes(b"chapter 1")
    (out / "template.tmpl").write_text("{{ name }}")
    (out / "cache.tmp").mkdir()
    (out / "cache.tmp" / "entry").write_text("cached")
    return _snapshot(out)


def test_the_users_files_in_the_output_folder_survive_and_tmp_names_are_images(tmp_path):
    inp = _dataset(tmp_path / "in", n=2)
    Image.open(inp / "img0.png").save(inp / "holiday.tmpfix.png")
    Image.open(inp / "img1.png").save(inp / "scan.tmp.png")
    out = tmp_path / "out"
    before = _user_files(out)
    code, stdout, stderr = _ddrm("restore", "--input-dir", inp, "--output-dir", out, "--task", "deno", "--steps", 2,
                                 "--num-workers", 0, "--no-progress", "--model", _tiny_model(tmp_path))
    assert code == 0, stderr
    assert "Traceback" not in stderr and "4 images restored" in stdout
    after = _snapshot(out)
    assert {k: after[k] for k in before} == before  # untouched, byte for byte
    assert sorted(set(after) - set(before)) == ["holiday.tmpfix.png", "img0.png", "img1.png", "report.jsonl",
                                                "scan.tmp.png", "summary.json"]


@pytest.mark.parametrize("how", ["same", "symlink", "dotdot"])
def test_an_output_folder_that_is_the_input_folder_is_refused_up_front(tmp_path, how):
    inp = _dataset(tmp_path / "in", n=2)
    if how == "symlink":
        os.symlink(inp, tmp_path / "link")
    out = {"same": inp, "symlink": tmp_path / "link", "dotdot": inp / ".." / "in"}[how]
    before = _snapshot(inp)
    code, stdout, stderr = _ddrm("restore", "--input-dir", inp, "--output-dir", out, "--task", "deno",
                                 "--steps", 2, "--no-progress")
    assert code == 2 and stdout == ""
    assert stderr.splitlines() == [f"ddrm-fast: error: --output-dir {out} is the --input-dir folder: the results "
                                   f"would mix with the inputs; choose another folder"]
    assert _snapshot(inp) == before


def _png_header_only(path, width, height):
    """A PNG whose header claims width x height pixels (and holds none): a decompression bomb's first bytes."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def test_every_kind_of_bad_item_is_reported_by_name_and_the_rest_restored(tmp_path):
    """FIFOs (image and noise map), a folder named like an image, a decompression bomb, an .npz and an .npy that
    declares 10^10 values as noise maps, manifest entries of the wrong type: each is one line naming it, the good
    images are restored, exit code 1, and no process hangs."""
    inp = _dataset(tmp_path / "in", n=3)
    os.mkfifo(inp / "fifo.png")
    (inp / "folder.png").mkdir()
    _png_header_only(inp / "bomb.png", 100000, 100000)
    for name in ("npz", "huge", "fifomap", "typed"):
        Image.open(inp / "img0.png").save(inp / f"{name}.png")
    np.savez(tmp_path / "map.npz", a=np.zeros((32, 32), np.float32))
    with open(tmp_path / "huge.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (100000, 100000)})
    os.mkfifo(tmp_path / "fifo.npy")
    manifest = {"npz.png": {"noise_map": "map.npz"}, "huge.png": {"noise_map": "huge.npy"},
                "fifomap.png": {"noise_map": "fifo.npy"}, "typed.png": {"sigma_y": [0.1]}, "img2.png": 5}
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    out = tmp_path / "out"
    code, stdout, stderr = _ddrm("restore", "--input-dir", inp, "--output-dir", out, "--task", "deno", "--steps", 2,
                                 "--manifest", tmp_path / "m.json", "--num-workers", 1, "--no-progress",
                                 "--model", _tiny_model(tmp_path), timeout=300)
    assert code == 1 and "Traceback" not in stderr, stderr
    reasons = {r["name"]: r["error"] for r in _report(out) if r["status"] == "error"}
    assert set(reasons) == {"fifo.png", "folder.png", "bomb.png", "npz.png", "huge.png", "fifomap.png", "typed.png",
                            "img2.png"}
    assert "a FIFO, not a regular file" in reasons["fifo.png"] and "a folder" in reasons["folder.png"]
    assert "too large to decode safely" in reasons["bomb.png"]
    assert "not an .npy file" in reasons["npz.png"] and "declares shape (100000, 100000)" in reasons["huge.png"]
    assert "a FIFO" in reasons["fifomap.png"] and "sigma_y [0.1] is not a number" in reasons["typed.png"]
    assert "expected an object of settings, got int" in reasons["img2.png"]
    assert sorted(stderr.splitlines()) == sorted(f"ddrm-fast: {n}: {r}" for n, r in reasons.items())
    assert sorted(n for n in os.listdir(out) if n.endswith(".png")) == ["img0.png", "img1.png"]
    assert "2 images restored (2 this run), 8 failed" in stdout


@pytest.mark.parametrize("manifest,message", [
    ("5", "expected a list of objects or an object of name: settings, got int"),
    ("{not json", "unreadable"),
    (None, "a FIFO, not a regular file"),
])
def test_a_file_that_is_no_manifest_at_all_is_a_bad_invocation(tmp_path, manifest, message):
    inp = _dataset(tmp_path / "in", n=1)
    path = tmp_path / "m.json"
    if manifest is None:
        os.mkfifo(path)
    else:
        path.write_text(manifest)
    code, stdout, stderr = _ddrm("restore", "--input-dir", inp, "--output-dir", tmp_path / "out", "--task", "deno",
                                 "--manifest", path, "--no-progress")
    assert code == 2 and len(stderr.splitlines()) == 1 and message in stderr, stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag,value,message", [
    ("--steps", 0, "argument --steps: must be >= 1, got 0"),
    ("--eta", 2, "argument --eta: must lie in [0, 1], got 2.0"),
    ("--steps", 100000, "steps (100000) cannot exceed the number of diffusion timesteps (1000)"),
    ("--batch-size", 0, "argument --batch-size: must be >= 1, got 0"),
    ("--compare", "fig.png", "--compare takes no FILE with --input-dir"),
])
def test_folder_arguments_are_checked_before_any_image_is_read(tmp_path, monkeypatch, capsys, flag, value, message):
    inp = _dataset(tmp_path / "in", n=2)
    monkeypatch.setattr(batch.job, "read_image", lambda *a, **k: pytest.fail("an image was decoded"))
    code = cli(["restore", "--input-dir", str(inp), "-o", str(tmp_path / "out"), "--task", "deno", flag, str(value),
                "--num-workers", "0", "--no-progress"])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_a_second_job_on_the_same_output_folder_is_refused_while_the_first_runs(tmp_path):
    inp = _dataset(tmp_path / "in", n=6)
    out = tmp_path / "out"
    model = _tiny_model(tmp_path)
    # 200 steps an image: the first job is still running when the second has started up (a fast machine restored
    # all six images with 20 steps before a second Python process had imported torch)
    first = subprocess.Popen(_cmd(inp, out, model, "--steps", "200"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out.exists() and any(n.startswith("img") for n in os.listdir(out))):
        time.sleep(0.01)
    assert first.poll() is None, "the first job finished before the second could start"
    code, stdout, stderr = _ddrm(*_cmd(inp, out, model)[3:])
    assert code == 2 and stdout == ""
    assert stderr.splitlines() == [f"ddrm-fast: error: --output-dir {out}: in use by another ddrm-fast job "
                                   f"(pid {first.pid}); wait for it to finish"]
    assert first.wait(timeout=300) == 0, first.stderr.read()
    ok = [r["name"] for r in _report(out) if r["status"] == "ok"]
    assert sorted(ok) == [f"img{i}.png" for i in range(6)]  # each once: the second job restored nothing
    assert sorted(os.listdir(out)) == [f"img{i}.png" for i in range(6)] + ["report.jsonl", "summary.json"]


def test_a_failed_write_leaves_no_file_and_a_rerun_completes(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    inp = _dataset(tmp_path / "in", n=3)
    real_save, saves = PILImage.Image.save, []

    def io_error(self, fp, *a, **k):
        saves.append(fp)
        if len(saves) == 2:  # img1's temporary (the images are written in name order)
            with open(fp, "wb") as f:
                f.write(b"\x89PNG half")  # part of the file is there when the device fails
            raise OSError(5, "Input/output error")
        return real_save(self, fp, *a, **k)

    monkeypatch.setattr(PILImage.Image, "save", io_error)
    stats = _run(inp, tmp_path / "out")
    assert stats["ok"] == 2 and stats["failed"] == 1
    assert sorted(os.listdir(tmp_path / "out")) == ["img0.png", "img2.png", "report.jsonl"]  # no final, no temporary
    failed = {r["name"]: r for r in _report(tmp_path / "out") if r["status"] == "error"}
    assert failed["img1.png"]["error"] == "could not write img1.png: OSError: [Errno 5] Input/output error"
    monkeypatch.setattr(PILImage.Image, "save", real_save)
    assert _run(inp, tmp_path / "out")["ok"] == 1
    assert sorted(r["name"] for r in _report(tmp_path / "out") if r["status"] == "ok") == [
        "img0.png", "img1.png", "img2.png"]


def test_resumed_images_keep_their_scores(tmp_path):
    """A kill between an image's rename and its report line: the rerun reports it 'recovered' with the PSNR/SSIM
    stored in the PNG, so the summary's mean covers every image it counts."""
    inp = _dataset(tmp_path / "in", n=3)
    out = tmp_path / "out"
    _run(inp, out)
    lines = open(out / "report.jsonl").read().splitlines()
    lost = json.loads(lines[1])
    (out / "report.jsonl").write_text("\n".join([lines[0], lines[2]]) + "\n")  # img1's line cut off by the kill
    stats = _run(inp, out)
    assert stats["ok"] == 0 and stats["todo"] == 0
    rec = _report(out)[-1]
    assert rec["recovered"] and rec["name"] == lost["name"]
    assert (rec["psnr"], rec["ssim"]) == (lost["psnr"], lost["ssim"])
    summary = batch.summarize(str(out), [dict(stats, load_s=0.0)], 1)
    want = np.mean([r["psnr"] for r in _report(out) if r["status"] == "ok"])
    assert summary["scored"] == summary["images"] == 3 and summary["mean_psnr"] == pytest.approx(want)


def test_an_existing_output_the_job_did_not_write_is_left_alone(tmp_path):
    inp = _dataset(tmp_path / "in", n=2)
    out = tmp_path / "out"
    out.mkdir()
    Image.new("RGB", (32, 32), "red").save(out / "img1.png")  # the user's own picture of that name
    before = (out / "img1.png").read_bytes()
    stats = _run(inp, out)
    assert stats["ok"] == 1 and stats["failed"] == 1 and (out / "img1.png").read_bytes() == before
    assert "exists and was not written by ddrm-fast for this image" in _report(out)[0]["error"]
    (out / "report.jsonl").write_text("my own notes\n")
    with pytest.raises(ValueError, match="report.jsonl exists and was not written by ddrm-fast"):
        _run(inp, out)


def test_manifest_entries_are_checked_one_by_one(tmp_path):
    csv_path = tmp_path / "m.csv"
    csv_path.write_text('name,task,sigma_y,seed\n"a.png",inp,0.1,\nb.png,deno,x,\nc.png,deno,0.1,3,extra\n'
                        "d.png,,,1.5\ne.png,,,\ne.png,,,\n")
    entries, bad = batch.read_manifest(str(csv_path))
    assert entries == {"a.png": {"task": "inp", "sigma_y": 0.1}}
    assert dict(bad) == {"b.png": "manifest entry: sigma_y 'x' is not a number",
                         "c.png": "manifest entry: more values than columns (['extra'] left over)",
                         "d.png": "manifest entry: seed '1.5' is not an integer",
                         "e.png": "listed more than once in the manifest"}
    json_path = tmp_path / "m.json"
    json_path.write_text(json.dumps([{"name": "a.png", "seed": True}, {"name": 7}, {"name": "b.png", "sigma": 0.1},
                                     "c.png", {"name": "d.png", "noise_map": 3}, {"name": "e.png", "seed": 2**70}]))
    entries, bad = batch.read_manifest(str(json_path))
    assert entries == {} and dict(bad) == {
        "a.png": "manifest entry: seed True is not an integer", "manifest entry 2": "has no name",
        "b.png": "manifest entry: unknown field 'sigma' (known: name, task, sigma_y, seed, noise_map)",
        "manifest entry 4": "expected an object, got str",
        "d.png": "manifest entry: noise_map 3 is not a file name",
        "e.png": f"manifest entry: seed {2**70} is outside [-2^63, 2^64)"}
    csv_path.write_text("name,sigma\na.png,0.1\n")  # a misspelt column would silently apply to no image
    with pytest.raises(ValueError, match=r"the header must name the columns name\[, task, sigma_y, seed, noise_map\]"):
        batch.read_manifest(str(csv_path))


def test_folder_jobs_score_the_baseline_and_write_comparisons_on_request(tmp_path):
    from ddrm_fast.imageio import read_image
    from ddrm_fast.metrics import psnr_ssim

    inp = _dataset(tmp_path / "in", n=2)
    _run(inp, tmp_path / "plain")
    assert not (tmp_path / "plain" / "compare").exists()  # opt-in
    out = tmp_path / "out"
    _run(inp, out, compare=True)
    pad, size = 6, 32  # the figure's layout: clean | degraded | baseline | DDRM, 6 pixels apart
    for rec in _report(out):
        assert rec["baseline"] == "bicubic"
        fig = _pixels(out / "compare" / rec["name"])
        panel = lambda j: fig[pad:pad + size, pad + j * (size + pad):pad + j * (size + pad) + size]  # noqa: E731
        assert np.array_equal(panel(3), _pixels(out / rec["name"]))  # DDRM: the restored image itself
        clean = read_image(str(inp / rec["name"]))
        np.testing.assert_array_equal(panel(0), _pixels(inp / rec["name"]))
        base = torch.from_numpy(panel(2)).permute(2, 0, 1).float() / 127.5 - 1
        assert psnr_ssim(base, clean)[0] == pytest.approx(rec["psnr_baseline"])
        # bicubic upsampling of the noisy block means: close to that of the clean block means
        smooth = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(clean[None], 4), scale_factor=4,
                                                 mode="bicubic", align_corners=False)[0]
        assert psnr_ssim(base, smooth)[0] > 24
    summary = batch.summarize(str(out), [dict(_run(inp, out, compare=True), load_s=0.0)], 1)
    both = summary["mean_psnr_both"]
    assert both["images"] == 2 and both["ddrm"] == pytest.approx(np.mean([r["psnr"] for r in _report(out)[:2]]))
    assert both["baseline"] == pytest.approx(np.mean([r["psnr_baseline"] for r in _report(out)[:2]]))
    # a line without the baseline's scores (an earlier version's): the DDRM-vs-baseline mean leaves that image out
    first, second = _report(out)[:2]
    (out / "report.jsonl").write_text(json.dumps({k: v for k, v in first.items() if "baseline" not in k}) + "\n" +
                                      json.dumps(second) + "\n")
    summary = batch.summarize(str(out), [dict(_run(inp, out, compare=True), load_s=0.0)], 1)
    assert summary["scored"] == 2 and summary["mean_psnr_both"] == {
        "ddrm": second["psnr"], "baseline": second["psnr_baseline"], "images": 1}


# --- what a killed or disk-full run leaves, and names that collide with the job's own ------------------------------
_QUICK = ["--task", "deno", "--steps", "2", "--num-workers", "0", "--no-progress"]


def _job(inp, out, model, *extra):
    return _ddrm("restore", "--input-dir", inp, "--output-dir", out, *_QUICK, "--model", model, *extra)


def _records(out):
    """The report's records; a line earlier versions glued onto a cut one holds its record after the cut."""
    records = []
    for line in open(out / "report.jsonl"):
        try:
            records.append(json.loads(line))
        except ValueError:
            records.append(json.loads(line[line.rindex('{"name": '):]))
    return records


def _once_each(out, names):
    """Every image reported ok exactly once, by the report and by the summary."""
    ok = [r["name"] for r in _records(out) if r["status"] == "ok"]
    assert sorted(ok) == sorted(names), ok
    assert json.load(open(out / "summary.json"))["images"] == len(names)


def test_a_users_lock_file_is_refused_and_never_touched(tmp_path):
    inp, out = _dataset(tmp_path / "in", n=2), tmp_path / "out"
    out.mkdir()
    (out / ".ddrm-fast.lock").write_text("notes\n")
    before = _snapshot(out)
    code, stdout, stderr = _job(inp, out, _tiny_model(tmp_path))
    assert code == 2 and stdout == "" and stderr.splitlines() == [
        f"ddrm-fast: error: --output-dir {out}: .ddrm-fast.lock exists and is not ddrm-fast's lock (not written by "
        f"ddrm-fast); it is not touched (move it away or choose another folder)"]
    assert _snapshot(out) == before


@pytest.mark.parametrize("how", ["torn", "torn and appended to"])
def test_a_torn_last_report_line_is_cut_and_every_image_reported_once(tmp_path, how):
    """A kill (or a full disk) in the middle of a report line: the image whose line was cut is recovered from its
    PNG's record, nothing is appended to the torn line, and no later rerun refuses the folder."""
    inp, out, model = _dataset(tmp_path / "in", n=3), tmp_path / "out", _tiny_model(tmp_path)
    assert _job(inp, out, model)[0] == 0
    lines = (out / "report.jsonl").read_text().splitlines(keepends=True)
    torn = lines[0] + lines[1] + lines[2][:25]  # img2's line cut short; img2.png is written
    if how == "torn and appended to":  # what earlier versions did on the next run: a record glued to the cut one
        torn += lines[2]
    (out / "report.jsonl").write_text(torn)
    for _ in range(2):
        code, stdout, stderr = _job(inp, out, model)
        assert code == 0 and "3 images restored (0 this run)" in stdout, stderr
        _once_each(out, ["img0.png", "img1.png", "img2.png"])
    recovered = [r for r in _records(out) if r.get("recovered")]
    if how == "torn":
        assert [r["name"] for r in recovered] == ["img2.png"] and "psnr" in recovered[0]
    assert all(line.endswith("\n") for line in (out / "report.jsonl").read_text().splitlines(keepends=True))


def test_a_torn_line_of_an_image_that_is_not_there_is_cut_too(tmp_path):
    # the issue's reproduction: `printf '{"name": "x", "sig' > o/report.jsonl`, then the job twice
    inp, out, model = _dataset(tmp_path / "in", n=3), tmp_path / "out", _tiny_model(tmp_path)
    out.mkdir()
    (out / "report.jsonl").write_text('{"name": "x", "sig')
    for expected in ("3 images restored (3 this run)", "3 images restored (0 this run)"):
        code, stdout, stderr = _job(inp, out, model)
        assert code == 0 and expected in stdout, (stdout, stderr)
        _once_each(out, ["img0.png", "img1.png", "img2.png"])


def test_an_input_named_like_a_temporary_is_an_ordinary_image(tmp_path):
    inp, out, model = _dataset(tmp_path / "in", n=1), tmp_path / "out", _tiny_model(tmp_path)
    odd = ".ddrm-fast-partial.1.0123456789abcdef.cat.png"  # how earlier versions named their temporaries
    os.rename(inp / "img0.png", inp / odd)
    assert _job(inp, out, model)[0] == 0
    first = (out / odd).read_bytes()
    code, stdout, _ = _job(inp, out, model)
    assert code == 0 and "1 images restored (0 this run)" in stdout
    assert (out / odd).read_bytes() == first  # neither removed as a temporary nor restored again
    _once_each(out, [odd])


def test_the_longest_names_are_written_and_a_name_that_cannot_be_is_refused_before_sampling(tmp_path):
    inp, out, model = _dataset(tmp_path / "in", n=1), tmp_path / "out", _tiny_model(tmp_path)
    longest = "n" * 251 + ".png"  # 255 bytes, the file system's limit: its output has the same name
    os.rename(inp / "img0.png", inp / longest)
    code, stdout, stderr = _job(inp, out, model)
    assert code == 0 and "Traceback" not in stderr
    _once_each(out, [longest])
    # one image: <stem>_deno_restored.png would pass the limit; refused up front, by name, nothing written
    code, stdout, stderr = _ddrm("restore", inp / longest, "-o", tmp_path / "one", *_QUICK, "--model", model)
    assert code == 2 and stderr.splitlines() == [
        f"ddrm-fast: error: INPUT: the output name {'n' * 251}_deno_restored.png would be 269 bytes, more than the "
        f"255 its file system takes; rename the input (or give --compare a shorter name)"]
    assert not (tmp_path / "one").exists()


def test_a_full_disk_stops_the_job_in_one_line_and_the_rerun_finishes(tmp_path, small_disk):
    inp, model = _dataset(tmp_path / "in", n=6, size=64), _tiny_model(tmp_path)
    out = small_disk / "out"
    filler = small_disk / "filler"  # room for about two results
    filler.write_bytes(os.urandom(270_000))
    code, stdout, stderr = _job(inp, out, model)
    lines = stderr.splitlines()
    assert code == 1 and len(lines) == 1, stderr
    assert [line for line in stdout.splitlines() if not line.startswith("network on ")] == []  # no summary line
    done = len([n for n in os.listdir(out) if n.endswith(".png")])
    assert 0 < done < 6
    assert lines[0] == f"ddrm-fast: error: no space left on {out}: {done} of 6 done; free space and rerun to finish"
    assert sorted(os.listdir(out)) == sorted([f"img{i}.png" for i in range(done)] + ["report.jsonl"])  # nothing partial
    filler.unlink()
    code, stdout, stderr = _job(inp, out, model)
    assert code == 0 and f"6 images restored ({6 - done} this run)" in stdout, stderr
    _once_each(out, [f"img{i}.png" for i in range(6)])


def test_a_disk_already_full_is_named_before_any_work(tmp_path, small_disk):
    inp, model = _dataset(tmp_path / "in", n=2), _tiny_model(tmp_path)
    fd = os.open(small_disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:  # every block taken
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    for argv in (["--input-dir", inp, "--output-dir", small_disk / "out"], [inp / "img0.png", "-o", small_disk / "o1"]):
        code, stdout, stderr = _ddrm("restore", *argv, *_QUICK, "--model", model)
        assert code == 1 and stdout == "" and stderr.splitlines() == [
            f"ddrm-fast: error: no space left on {argv[-1]}: could not write its lock file; free space and run again"]
    assert sorted(os.listdir(small_disk)) == ["filler"]  # the folders the job made for itself are gone again


def test_a_full_disk_in_the_library_raises_disk_full_with_the_counts(tmp_path, monkeypatch):
    # the same without a small file system: the third result's write finds the disk full
    import ddrm_fast.batch.job as batch_module
    from ddrm_fast.files import DiskFull

    inp, out = _dataset(tmp_path / "in", n=5), tmp_path / "out"
    real, writes = batch_module.write_png, []

    def write_png(x, path, info=None):
        writes.append(path)
        if len(writes) == 3:
            raise DiskFull(str(out), "could not write it")
        return real(x, path, info)

    monkeypatch.setattr(batch_module, "write_png", write_png)
    with pytest.raises(DiskFull, match=r"no space left on .*out: 2 of 5 done; free space and rerun to finish"):
        _run(inp, out, batch_size=5)
    monkeypatch.setattr(batch_module, "write_png", real)
    assert _run(inp, out)["ok"] == 3
    assert sorted(r["name"] for r in _report(out) if r["status"] == "ok") == [f"img{i}.png" for i in range(5)]


def test_a_model_that_returns_nan_fails_its_images_by_name(tmp_path):
    inp = _dataset(tmp_path / "in", n=2)
    stats = batch.restore_dir(lambda x, t: x * float("nan"), BETAS,
                              batch.FolderJob(str(inp), str(tmp_path / "out"), "sr4", num_workers=0, progress=False,
                                              settings=Settings(steps=2)))
    assert stats["ok"] == 0 and stats["failed"] == 2
    errors = [r["error"] for r in _report(tmp_path / "out")]
    assert errors == ["sampling failed: ValueError: model: its output (eps) was NaN or Inf at some step, so the "
                      "restoration is not finite"] * 2
