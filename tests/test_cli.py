import json
import subprocess
import sys

from ddrm_fast.cli import demo


def test_demo_restores_what_the_pseudo_inverse_cannot():
    for task in ("inp", "color", "deblur_uni"):
        r = demo.run(task, sigma_y=0.05, steps=20, size=32, seed=0, backend="reference")
        assert r["psnr_ddrm"] > r["psnr_pinv"] + 3, r


def test_demo_command_prints_the_numbers_of_the_run():
    out = subprocess.run([sys.executable, "-m", "ddrm_fast", "demo", "--size", "32", "--task", "sr4"],
                         capture_output=True, text=True, check=True).stdout
    row = [line.split() for line in out.splitlines() if line.strip().startswith("sr4")]
    r = demo.run("sr4", sigma_y=0.05, steps=20, size=32, seed=0, backend="auto")  # the command's defaults
    assert r["baseline"] == "bicubic" and r["psnr_baseline"] > r["psnr_pinv"] + 1  # bicubic, not block replication
    diff = r["psnr_ddrm"] - r["psnr_baseline"]
    assert len(row) == 1 and row[0][1:5] == ["bicubic", f"{r['psnr_baseline']:.2f}", f"{r['psnr_ddrm']:.2f}",
                                              f"{diff:+.2f}"]


def test_bad_size_is_one_line_and_nonzero():
    p = subprocess.run([sys.executable, "-m", "ddrm_fast", "demo", "--size", "30", "--task", "sr4"],
                       capture_output=True, text=True)
    assert p.returncode == 2
    want = "ddrm-fast: error: task sr4: image size 30x30 is not divisible by the ratio 4"
    assert p.stderr.strip().splitlines() == [want]


# --- restore and train -------------------------------------------------------------------------------------------
import os  # noqa: E402

import numpy as np  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from ddrm_fast.cli.main import main as cli  # noqa: E402

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "ddrm_fast", "data", "astronaut.png")


@pytest.fixture
def small_png(tmp_path):
    """A 32x32 crop of the bundled example (the face), RGB."""
    path = tmp_path / "face.png"
    Image.open(EXAMPLE).crop((88, 40, 120, 72)).save(path)
    return str(path)


def test_restore_writes_three_images_and_prints_scores(small_png, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli(["restore", small_png, "--task", "sr4", "--steps", "4", "-o", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "bicubic         PSNR" in text and "DDRM            PSNR" in text and "dB vs bicubic)" in text
    names = sorted(os.listdir(out))
    assert names == ["face_sr4_bicubic.png", "face_sr4_degraded.png", "face_sr4_restored.png"]
    assert Image.open(out / "face_sr4_degraded.png").size == (8, 8)
    assert Image.open(out / "face_sr4_restored.png").size == (32, 32)


def test_restore_observed_low_res_gives_the_large_image(tmp_path, capsys):
    low = tmp_path / "low.png"
    Image.open(EXAMPLE).resize((16, 8)).save(low)
    assert cli(["restore", str(low), "--task", "sr4", "--observed", "--steps", "3", "-o", str(tmp_path / "o"),
                "--no-progress"]) == 0
    assert sorted(os.listdir(tmp_path / "o")) == ["low_sr4_bicubic.png", "low_sr4_restored.png"]
    bicubic = np.asarray(Image.open(tmp_path / "o" / "low_sr4_bicubic.png")).astype(float)
    low = torch.from_numpy(np.asarray(Image.open(low))).permute(2, 0, 1).float()[None]
    want = torch.nn.functional.interpolate(low, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 255)
    assert np.abs(bicubic - want[0].permute(1, 2, 0).numpy()).max() <= 1  # 8-bit rounding only
    assert Image.open(tmp_path / "o" / "low_sr4_restored.png").size == (64, 32)


def test_restore_with_a_mask_file(small_png, tmp_path):
    mask = Image.new("L", (32, 32), 255)
    mask.paste(0, (8, 8, 24, 24))
    mask.save(tmp_path / "mask.png")
    assert cli(["restore", small_png, "--task", "inp", "--mask", str(tmp_path / "mask.png"), "--steps", "3",
                "-o", str(tmp_path / "o"), "--no-progress"]) == 0
    degraded = np.asarray(Image.open(tmp_path / "o" / "face_inp_degraded.png"))
    assert (degraded[8:24, 8:24] == 128).all()  # missing pixels show as zero, mid-gray
    assert (degraded[:8] != 128).any()


def _fails(args, tmp_path, capsys, message):
    out = tmp_path / "never"
    code = cli(args + ["-o", str(out), "--no-progress", "--steps", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and err[0].startswith("ddrm-fast: error:") and message in err[0], err
    assert not out.exists()  # nothing partial written


def test_restore_errors_are_one_line_and_write_nothing(small_png, tmp_path, capsys):
    _fails(["restore", str(tmp_path / "missing.png"), "--task", "sr4"], tmp_path, capsys, "no such file")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    _fails(["restore", str(tmp_path / "junk.png"), "--task", "sr4"], tmp_path, capsys, "not a readable image")
    Image.new("L", (32, 32)).save(tmp_path / "gray.png")
    _fails(["restore", str(tmp_path / "gray.png"), "--task", "sr4"], tmp_path, capsys, "image mode L")
    Image.new("RGB", (30, 30)).save(tmp_path / "odd.png")
    _fails(["restore", str(tmp_path / "odd.png"), "--task", "sr4"], tmp_path, capsys, "not divisible by the ratio 4")
    _fails(["restore", str(tmp_path / "odd.png"), "--task", "deno"], tmp_path, capsys, "multiples of 8")
    Image.new("L", (16, 16)).save(tmp_path / "small_mask.png")
    _fails(["restore", small_png, "--task", "inp", "--mask", str(tmp_path / "small_mask.png")], tmp_path, capsys,
           "does not match the image's 32x32")
    _fails(["restore", small_png, "--task", "deno", "--model", str(tmp_path / "none.pt")], tmp_path, capsys,
           "model file not found")
    _fails(["restore", small_png, "--task", "deno", "--sigma-y", "3"], tmp_path, capsys,
           "argument --sigma-y: must lie in [0, 1], got 3.0")


def test_restore_own_degradations_from_the_command_line(small_png, tmp_path, capsys):
    """deblur with a kernel file (npy and PNG alike), resize by any scale, color_sr4; each against its baseline, and
    each observed: the degraded file restored again gives the same operator and size."""
    from ddrm_fast import restoration, tasks
    from ddrm_fast.imageio import read_image, read_kernel

    kernel = tasks.motion_kernel(5, 30)
    np.save(tmp_path / "psf.npy", kernel.numpy())
    Image.fromarray((kernel / kernel.max() * 255).round().byte().numpy()).save(tmp_path / "psf.png")
    torch.testing.assert_close(read_kernel(str(tmp_path / "psf.png")), kernel, atol=1e-3, rtol=0)
    runs = [("deblur", ["--kernel", str(tmp_path / "psf.npy")], "wiener", "Wiener"),
            ("resize", ["--scale", "2.5", "--kernel-1d", "lanczos3"], "upsampled", "upsampled"),
            ("color_sr4", [], "gray_upsampled", "gray upsampled")]
    for task, extra, base_file, base_name in runs:
        out = tmp_path / task
        assert cli(["restore", small_png, "--task", task, "--steps", "3", "-o", str(out), "--no-progress"]
                   + extra) == 0
        text = capsys.readouterr().out
        assert f"dB vs {base_name})" in text, text
        assert sorted(os.listdir(out)) == sorted(f"face_{task}_{kind}.png" for kind in ("restored", "degraded",
                                                                                         base_file))
        assert Image.open(out / f"face_{task}_restored.png").size == (32, 32)
        # the degraded file, restored as observed: the operator the clean run measured with, up to 8-bit rounding
        degraded = str(out / f"face_{task}_degraded.png")
        again = tmp_path / f"{task}_again"
        assert cli(["restore", degraded, "--task", task, "--observed", "--steps", "2", "-o", str(again),
                    "--no-progress"] + extra) == 0
        capsys.readouterr()
        assert Image.open(again / f"face_{task}_degraded_{task}_restored.png").size == (32, 32), task
    # what the degraded image holds: the operator applied to the clean image, plus the noise of seed 0
    m = restoration.measure("deblur", read_image(small_png), sigma_y=0.05, seed=0,
                            options=tasks.Options(kernel=read_kernel(str(tmp_path / "psf.npy"))))
    written = read_image(str(tmp_path / "deblur" / "face_deblur_degraded.png"))
    assert (written - m.y[0].clamp(-1, 1)).abs().max() <= 1 / 127.5 + 1e-6


def test_own_degradation_errors_are_one_line(small_png, tmp_path, capsys):
    np.save(tmp_path / "neg.npy", -np.ones((3, 3), np.float32))
    np.save(tmp_path / "cube.npy", np.ones((3, 3, 3), np.float32))
    np.save(tmp_path / "zeros.npy", np.zeros((3, 3), np.float32))
    big = tmp_path / "big.npy"  # declares 100000 x 100000 float32 in its header: refused unread
    with open(big, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (100000, 100000)})
    Image.new("L", (300, 300), 255).save(tmp_path / "wide.png")
    np.save(tmp_path / "ok.npy", np.ones((3, 3), np.float32))
    np.save(tmp_path / "huge.npy", np.ones((40, 40), np.float32))
    for extra, message in ((["--task", "deblur"], "task deblur needs a blur kernel (--kernel FILE"),
                           (["--task", "sr4", "--kernel", str(tmp_path / "ok.npy")], "--kernel is for --task deblur"),
                           (["--task", "deno", "--scale", "3"], "--scale is for --task resize"),
                           (["--task", "deblur", "--kernel", str(tmp_path / "neg.npy")], "finite and >= 0"),
                           (["--task", "deblur", "--kernel", str(tmp_path / "zeros.npy")], "all weights are zero"),
                           (["--task", "deblur", "--kernel", str(tmp_path / "cube.npy")], "a 2-D array expected"),
                           (["--task", "deblur", "--kernel", str(big)], "more than the"),
                           (["--task", "deblur", "--kernel", str(tmp_path / "wide.png")], "larger than a kernel"),
                           (["--task", "deblur", "--kernel", str(tmp_path)], "not a regular file"),
                           (["--task", "deblur", "--kernel", str(tmp_path / "huge.npy")],
                            "kernel (40x40) is larger than the image (32x32)"),
                           (["--task", "resize", "--scale", "1"], "argument --scale: must lie in (1, 64]"),
                           (["--task", "resize", "--kernel-1d", "nearest"], "argument --kernel-1d: invalid choice")):
        _fails(["restore", small_png] + extra, tmp_path, capsys, message)
    # an observed input that does not fit says what the task expects
    Image.new("RGB", (9, 9)).save(tmp_path / "tiny.png")
    _fails(["restore", str(tmp_path / "tiny.png"), "--task", "resize", "--observed", "--scale", "3"], tmp_path,
           capsys, "with --observed, INPUT is the small image (the result is --scale times larger)")


def test_unknown_task_is_a_usage_error(small_png, tmp_path, capsys):
    assert cli(["restore", small_png, "--task", "sr3", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "argument --task: invalid choice: 'sr3'" in err[0]


def test_train_writes_a_loadable_model_and_resumes_only_when_asked(tmp_path, capsys):
    from ddrm_fast.models import load

    out = str(tmp_path / "run")
    args = ["train", "-o", out, "--batch-size", "2", "--crop", "16", "--no-progress", "--checkpoint-every", "2",
            "--no-heldout", "--steps", "3"]
    assert cli(args) == 0
    model, betas = load(os.path.join(out, "model.safetensors"))
    assert model.config.model_channels == 32 and betas.numel() == 1000
    capsys.readouterr()
    before = open(os.path.join(out, "state.pt"), "rb").read()
    assert cli(args) == 2  # an existing run is neither overwritten nor continued without --resume
    assert "holds a training run at step 3: --resume continues it" in capsys.readouterr().err
    assert cli(args[:-1] + ["4", "--resume"]) == 2  # another cosine schedule: not the same run
    assert "another recipe (steps)" in capsys.readouterr().err
    assert open(os.path.join(out, "state.pt"), "rb").read() == before
    assert cli(args + ["--resume"]) == 0  # finished: resumes at its last step and has nothing left to do
    assert "at step 3" in capsys.readouterr().out
    state = torch.load(os.path.join(out, "state.pt"), weights_only=True)
    assert state["step"] == 3 and state["recipe"]["batch_size"] == 2
    assert not any("heldout_loss" in line for line in open(os.path.join(out, "log.jsonl")))  # --no-heldout


def test_bench_runs_every_mode_on_the_cpu_and_checks_quality(tmp_path, capsys):
    import csv

    out = tmp_path / "bench"
    # one batch size: each size is a fresh torch.compile, the slow part on the CPU
    assert cli(["bench", "--batch", "2", "--steps", "2", "--repeats", "1", "--size", "16", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "bench.csv")))
    assert [r["mode"] for r in rows] == ["reference", "fused", "fused_bf16", "compiled_bf16"]
    by = {r["mode"]: r for r in rows}
    assert by["reference"]["psnr_vs_reference"] == "inf" and float(by["reference"]["speedup"]) == 1
    assert float(by["fused"]["psnr_vs_reference"]) > 60  # same noise, float32: rounding only
    assert 25 < float(by["compiled_bf16"]["psnr_vs_reference"]) < 90  # a bfloat16 network: close, not equal
    assert float(by["fused"]["images_per_s"]) > 0 and 0 < float(by["fused"]["network_share"]) <= 1
    assert (out / "bench.png").stat().st_size > 1000 and "| 2 | fused |" in (out / "bench.md").read_text()
    for r in rows:  # the network's FLOP rate against the GEMM rate of the same run, and the memory columns
        assert 0 < float(r["network_tflops"]) and 0 < float(r["network_vs_matmul"]) < 1
        assert float(r["peak_mib"]) > float(r["model_mib"]) > 0
    # the loop keeps only x_t across the network call on every backend (the reference no longer holds its initial
    # Philox draw for the whole loop)
    assert all(float(r["buffers_per_sample"]) <= 3 for r in rows if r["mode"] in ("fused", "reference"))
    capsys.readouterr()
    assert cli(["bench", "--modes", "reference,warp"]) == 2
    assert "unknown warp" in capsys.readouterr().err


def test_class_conditional_models_need_a_label(small_png, tmp_path, capsys):
    from ddrm_fast.models import ADMUNet, save

    torch.manual_seed(0)
    cond = tmp_path / "cond.safetensors"
    save(ADMUNet(dict(model_channels=32, num_res_blocks=1, channel_mult=(1, 2), attention_ds=(), num_classes=3)),
         cond, torch.linspace(1e-4, 0.02, 1000))
    _fails(["restore", small_png, "--task", "deno", "--model", str(cond)], tmp_path, capsys, "give --class-label")
    _fails(["restore", small_png, "--task", "deno", "--model", str(cond), "--class-label", "3"], tmp_path, capsys,
           "class label must lie in 0..2")
    _fails(["restore", small_png, "--task", "deno", "--class-label", "1"], tmp_path, capsys,
           "--class-label is for class-conditional models; this one is not")
    assert cli(["restore", small_png, "--task", "deno", "--model", str(cond), "--class-label", "2", "--steps", "2",
                "-o", str(tmp_path / "o"), "--no-progress"]) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA modes need a GPU")
def test_bench_runs_every_mode_on_the_gpu(tmp_path):
    import csv

    out = tmp_path / "bench"
    assert cli(["bench", "--batch", "2", "--steps", "3", "--repeats", "1", "--size", "32", "--out", str(out)]) == 0
    rows = {r["mode"]: r for r in csv.DictReader(open(out / "bench.csv"))}
    assert list(rows) == ["reference", "fused", "fused_bf16", "graphs", "compiled_bf16"]
    assert float(rows["graphs"]["psnr_vs_reference"]) > 60  # a replayed graph computes what eager mode does
    assert 25 < float(rows["compiled_bf16"]["psnr_vs_reference"]) < 90
    for mode in ("fused", "fused_bf16"):  # eager: the allocator's peak is the loop's (graphs add their pools)
        assert 0 < float(rows[mode]["peak_mib"]) and float(rows[mode]["buffers_per_sample"]) <= 3, mode


def test_live_bytes_counts_storages_alive_together():
    from ddrm_fast.probes import LiveBytes, buffers_per_sample

    before = torch.zeros(1000)
    with LiveBytes() as live:
        a = torch.empty(1000)            # 4000 bytes
        v = a[10:]                       # a view: no new storage
        a.add_(1)                        # in place: none either
        before.view(10, 100).mul_(2)     # views and in-place ops on an earlier tensor: not counted
        del a
        b = torch.empty(500)             # v keeps a's storage alive: 6000 bytes together
        del v
        c = torch.empty(250)             # a's storage gone: 3000 now, the peak stays
    assert (live.peak, live.now) == (6000, 3000)
    del b, c
    assert buffers_per_sample(3.0, 1.0, 2, 2**18) == 1.0  # 2 MiB over 2 samples of 1 MiB float32 images


# --- every entry point, bad arguments and bad files: one line, no traceback, the right exit code, nothing touched --
def _workspace(root):
    """Good inputs, hostile files and folders holding the user's own files."""
    from ddrm_fast.models import ADMUNet, save

    root.mkdir()
    im = Image.open(EXAMPLE)
    (root / "in").mkdir()
    for i, name in enumerate(("a.png", "b.png")):
        im.crop((40 * i, 40, 40 * i + 32, 72)).save(root / "in" / name)
    im.crop((88, 40, 120, 72)).save(root / "face.png")
    os.mkfifo(root / "fifo.png")
    os.mkfifo(root / "fifo.pt")
    os.mkfifo(root / "fifo.json")
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    (root / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 10**5, 10**5, 8, 2, 0,
                                                                                        0, 0)) + chunk(b"IEND", b""))
    (root / "file.txt").write_text("the user's notes")
    (root / "m5.json").write_text("5")
    torch.manual_seed(0)
    tiny = ADMUNet(dict(model_channels=32, num_res_blocks=1, channel_mult=(1, 2), attention_ds=()))
    save(tiny, root / "tiny.safetensors", torch.linspace(1e-4, 0.02, 1000))
    sd = tiny.state_dict()
    torch.save({**sd, "time_embed.0.weight": torch.zeros(4)}, root / "crafted_rank.pt")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(root / "crafted_meta.safetensors"),
              metadata={"ddrm_fast": "not json"})
    for folder, files in {"user_out": {"face_deno_restored.png": None, "thesis.tmp.docx": b"chapter 1"},
                          "foreign_report": {"report.jsonl": b"my notes\n"},
                          "trainout": {"model.safetensors": b"someone else's weights"},
                          "benchout": {"bench.csv": b"my,own,table\n"},
                          "mixed_out": {"template.tmpl": b"{{ x }}", "cache.tmp/entry": b"cached"}}.items():
        for name, data in files.items():
            path = root / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if data is None:
                Image.new("RGB", (8, 8), "red").save(path)  # the user's picture, with the name a result would take
            else:
                path.write_bytes(data)
    (root / "userlock").mkdir()
    (root / "userlock" / ".ddrm-fast.lock").write_text("notes\n")  # the user's file, named like the job's lock
    im.crop((88, 40, 120, 72)).save(root / ("n" * 245 + ".png"))  # its one-image outputs would pass 255 bytes
    _diffusers_folders(root)
    (root / "mixed").mkdir()
    for name in ("a.png", "b.png"):
        (root / "mixed" / name).write_bytes((root / "in" / name).read_bytes())
    os.mkfifo(root / "mixed" / "fifo.png")
    (root / "mixed" / "junk.png").write_bytes(b"not an image")
    return root


def _diffusers_folders(root):
    """diffusers folders with a config that is a list, a schedule of 10**12 steps and a config that does not fit
    the weights (each one line, exit 2, no diffusers chatter)."""
    diffusers = pytest.importorskip("diffusers")
    unet = diffusers.UNet2DModel(sample_size=16, block_out_channels=(32, 64), norm_num_groups=8, layers_per_block=1,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"))
    for name in ("dlist", "dsched", "dwrong"):
        unet.save_pretrained(root / name)
    (root / "dlist" / "config.json").write_text("[1, 2, 3]")
    (root / "dsched" / "scheduler_config.json").write_text('{"num_train_timesteps": 1000000000000}')
    cfg = json.loads((root / "dwrong" / "config.json").read_text())
    (root / "dwrong" / "config.json").write_text(json.dumps(dict(cfg, block_out_channels=[16, 32])))


def _tree(root):
    out = {}
    for d, dirs, names in os.walk(root):
        for n in names + dirs:
            p = os.path.join(d, n)
            out[os.path.relpath(p, root)] = open(p, "rb").read() if os.path.isfile(p) else "<not a file>"
    return out


def test_train_init_fine_tunes_the_weights_of_a_model_file_and_records_them(tmp_path, capsys):
    import hashlib

    from ddrm_fast.models import ADMUNet, load, metadata, save

    torch.manual_seed(1)
    start = ADMUNet(dict(model_channels=32, num_res_blocks=1, channel_mult=(1, 2), attention_ds=()))
    path = str(tmp_path / "start.safetensors")
    save(start, path, torch.linspace(2e-4, 0.03, 500), training={"steps": 7})
    args = ["train", "-o", str(tmp_path / "ft"), "--init", path, "--steps", "1", "--lr", "1e-12", "--batch-size",
            "1", "--crop", "16", "--no-progress", "--no-heldout", "--rot90"]
    assert cli(args) == 0
    out = os.path.join(tmp_path, "ft", "model.safetensors")
    model, betas = load(out)
    # a learning rate of 1e-12: the weights are the file's (a fresh initialisation would differ everywhere)
    assert model.config.channel_mult == (1, 2) and torch.equal(betas, torch.linspace(2e-4, 0.03, 500).double())
    for key, value in start.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=1e-6, msg=key)
    assert metadata(out)["training"]["rot90"] is True  # the recipe, as run
    lineage = metadata(out)["training"]["init"]
    assert lineage == {"file": "start.safetensors", "sha256": hashlib.sha256(open(path, "rb").read()).hexdigest(),
                       "training": {"steps": 7}}
    capsys.readouterr()
    save(ADMUNet(start.config), path, torch.linspace(2e-4, 0.03, 500))  # other weights under the same name
    assert cli(args + ["--resume"]) == 2  # a resume starts from the same weights or not at all
    assert "another recipe (init_sha256)" in capsys.readouterr().err


_R = ["restore", "{ws}/face.png", "--task", "deno", "-o", "{ws}/o", "--no-progress", "--steps", "2",
      "--model", "{ws}/tiny.safetensors"]
_D = ["restore", "--input-dir", "{ws}/in", "-o", "{ws}/o", "--task", "deno", "--no-progress", "--steps", "2",
      "--model", "{ws}/tiny.safetensors", "--num-workers", "0"]
_T = ["train", "-o", "{ws}/t", "--steps", "1", "--batch-size", "1", "--crop", "16", "--no-progress", "--no-heldout"]
_B = ["bench", "--batch", "1", "--steps", "2", "--repeats", "1", "--size", "16", "--model", "{ws}/tiny.safetensors",
      "--modes", "reference"]


def _set(argv, flag, value):
    """argv with ``flag``'s value replaced (or the flag added)."""
    argv = list(argv)
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    return argv


BAD_INVOCATIONS = [  # (argv, the line's words)
    (["restore", "{ws}/missing.png"] + _R[2:], "input {ws}/missing.png: no such file"),
    (["restore", "{ws}/fifo.png"] + _R[2:], "input {ws}/fifo.png: a FIFO, not a regular file"),
    (["restore", "{ws}/bomb.png"] + _R[2:], "input {ws}/bomb.png: too large to decode safely"),
    (_set(_R, "-o", "{ws}/file.txt"), "-o {ws}/file.txt: exists and is not a folder"),
    (_set(_R, "-o", "{ws}/user_out"), "{ws}/user_out/face_deno_restored.png exists and was not written by ddrm-fast"),
    (_set(_R, "--steps", "0"), "argument --steps: must be >= 1, got 0"),
    (_set(_R, "--eta", "2"), "argument --eta: must lie in [0, 1], got 2.0"),
    (_set(_R, "--steps", "100000"), "steps (100000) cannot exceed the number of diffusion timesteps (1000)"),
    (_set(_R, "--model", "{ws}/fifo.pt"), "model file {ws}/fifo.pt: a FIFO, not a regular file"),
    (_set(_R, "--model", "{ws}/crafted_rank.pt"), "time_embed.0.weight has shape (4,)"),
    (_set(_R, "--model", "{ws}/crafted_meta.safetensors"),
     "{ws}/crafted_meta.safetensors: its 'ddrm_fast' metadata is not JSON"),
    (_set(_R, "--device", "quantum"), "argument --device: not a device: 'quantum'"),
    (_set(_R, "--mask", "{ws}/face.png"), "--mask is for --task inp, not deno"),
    (["restore"] + _R[2:], "give either INPUT (one image) or --input-dir (a folder)"),
    (_set(_R, "-o", "{ws}/file.txt/sub"), "-o {ws}/file.txt/sub: {ws}/file.txt is a file, not a folder"),
    (_set(_R, "-o", "{ws}/userlock"), "{ws}/userlock: .ddrm-fast.lock exists and is not ddrm-fast's lock"),
    (["restore", "{ws}/" + "n" * 245 + ".png"] + _R[2:], "INPUT: the output name " + "n" * 245 + "_deno_restored.png "
     "would be 263 bytes, more than the 255 its file system takes"),
    (_set(_R, "--model", "{ws}/dlist"), "{ws}/dlist/config.json: expected a JSON object, got a list"),
    (_set(_R, "--model", "{ws}/dsched"), "scheduler num_train_timesteps 1000000000000 must be an integer in "
                                         "[1, 100000]"),
    (_set(_R, "--model", "{ws}/dwrong"), "{ws}/dwrong: diffusers could not load it (Error(s) in loading state_dict "
                                         "for UNet2DModel: size mismatch for conv_in.weight"),
    (_set(_D, "-o", "{ws}/file.txt/sub"), "--output-dir {ws}/file.txt/sub: {ws}/file.txt is a file, not a folder"),
    (_set(_D, "-o", "{ws}/userlock"), "{ws}/userlock: .ddrm-fast.lock exists and is not ddrm-fast's lock"),
    (_set(_D, "-o", "{ws}/in"), "--output-dir {ws}/in is the --input-dir folder"),
    (_set(_D, "--steps", "0"), "argument --steps: must be >= 1, got 0"),
    (_set(_D, "--eta", "2"), "argument --eta: must lie in [0, 1], got 2.0"),
    (_set(_D, "--steps", "100000"), "steps (100000) cannot exceed the number of diffusion timesteps (1000)"),
    (_set(_D, "--batch-size", "0"), "argument --batch-size: must be >= 1, got 0"),
    (_set(_D, "--manifest", "{ws}/m5.json"), "--manifest {ws}/m5.json: expected a list of objects"),
    (_set(_D, "--manifest", "{ws}/fifo.json"), "--manifest {ws}/fifo.json: a FIFO, not a regular file"),
    (_set(_D, "--masks-dir", "{ws}/missing"), "--masks-dir {ws}/missing: no such folder"),
    (_set(_D, "--input-dir", "{ws}/missing"), "--input-dir {ws}/missing: no such folder"),
    (_set(_D, "-o", "{ws}/foreign_report"), "report.jsonl exists and was not written by ddrm-fast"),
    (_set(_D, "--mask", "{ws}/face.png"), "--mask is for one image; give --masks-dir with --input-dir"),
    (_set(_T, "--steps", "0"), "argument --steps: must be >= 1, got 0"),
    (_set(_T, "-o", "{ws}/file.txt"), "-o {ws}/file.txt: exists and is not a folder"),
    (_set(_T, "--crop", "12"), "crop must be a positive multiple of 8 for this UNet, got 12"),
    (_set(_T, "-o", "{ws}/trainout"), "{ws}/trainout/model.safetensors exists and was not written by ddrm-fast"),
    (_set(_T, "--device", "quantum"), "argument --device: not a device: 'quantum'"),
    (_set(_T, "--init", "{ws}/missing.pt"), "--init {ws}/missing.pt: no such file"),
    (_set(_T, "--init", "{ws}/fifo.pt"), "--init {ws}/fifo.pt: a FIFO, not a regular file"),
    (_set(_T, "--init", "{ws}/crafted_rank.pt"), "time_embed.0.weight has shape (4,)"),
    (_set(_set(_T, "--init", "{ws}/tiny.safetensors"), "--model-channels", "16"),
     "--init: the architecture and schedule come from that file; drop --model-channels and --schedule"),
    (_set(_B, "--batch", "0"), "argument --batch: must be >= 1, got 0"),
    (_set(_B, "--batch", "x"), "argument --batch: an integer expected, got 'x'"),
    (_set(_B, "--modes", "reference,warp"), "--modes: unknown warp"),
    (_set(_B, "--size", "30"), "--size 30 must be a multiple of 4"),
    (_set(_B, "--model", "{ws}/missing.pt"), "model file not found: {ws}/missing.pt"),
    (_set(_B, "--out", "{ws}/file.txt"), "--out {ws}/file.txt: exists and is not a folder"),
    (_set(_B, "--out", "{ws}/benchout"), "--out {ws}/benchout: bench.csv exists and was not written by ddrm-fast"),
]


def test_every_entry_point_fails_in_one_line_and_touches_nothing(tmp_path):
    """Real `ddrm-fast` processes (four at a time): each bad invocation prints one line naming what is wrong, no
    traceback, exit code 2, and writes nothing; a folder job with bad items reports each by name, restores the rest,
    exits 1 and leaves the user's files in its output folder as they were."""
    from concurrent.futures import ThreadPoolExecutor

    ws = _workspace(tmp_path / "ws")
    before = _tree(ws)
    mixed = [a.replace("{ws}/in", "{ws}/mixed").replace("{ws}/o", "{ws}/mixed_out") for a in _D]
    runs = [(argv, 2, words) for argv, words in BAD_INVOCATIONS] + [(mixed, 1, None)]

    def run(case):
        argv, _, _ = case
        p = subprocess.run([sys.executable, "-m", "ddrm_fast"] + [a.format(ws=ws) for a in argv], capture_output=True,
                           text=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"})
        return p.returncode, p.stderr

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, runs))
    for (argv, code, words), (got, stderr) in zip(runs, results):
        lines = stderr.splitlines()
        assert "Traceback" not in stderr and got == code, (argv, got, stderr)
        if words is not None:
            assert len(lines) == 1 and lines[0].startswith("ddrm-fast: error: "), (argv, stderr)
            assert words.format(ws=ws) in lines[0], (argv, lines[0])
    _, stderr = results[-1]
    assert sorted(line.split(":")[1].strip() for line in stderr.splitlines()) == ["fifo.png", "junk.png"]
    after = _tree(ws)
    new = sorted(set(after) - set(before))
    assert new == ["mixed_out/a.png", "mixed_out/b.png", "mixed_out/report.jsonl", "mixed_out/summary.json"]
    assert {k: after[k] for k in before} == before  # every file that was there, byte for byte


def test_restore_samples_writes_the_mean_and_spread_of_k_posterior_samples(small_png, tmp_path, capsys):
    """--samples 3: the restored PNG is the mean of three samples of the same y, each drawn alone from its own
    stream (seeded from the image's generator after measuring), the _std.png their per-pixel standard deviation with
    its scale, the figure has the spread as a fifth panel, and the printout and the files say so."""
    from ddrm_fast import ddrm_sample, tasks
    from ddrm_fast.figures import std_picture
    from ddrm_fast.imageio import read_image, read_png_info, to_uint8
    from ddrm_fast.models import default_model
    from ddrm_fast.sampler.posterior import sample_seeds

    out = tmp_path / "out"
    assert cli(["restore", small_png, "--task", "sr4", "--steps", "3", "--samples", "3", "-o", str(out),
                "--no-progress", "--compare", "--exact"]) == 0  # float32 eager: the library's default numbers
    text = capsys.readouterr().out
    assert "3 steps, the mean of 3 samples" in text and "DDRM, mean of 3 PSNR" in text
    # by hand: y degraded with seed 0's generator, which then seeds the three samples, each sampled alone
    g = torch.Generator().manual_seed(0)
    clean = read_image(small_png)[None]
    op = tasks.make_operator("sr4", clean.shape[1:], generator=g)
    y = tasks.degrade(clean, op, 2 * 0.05, g)
    model, betas = default_model("cpu")
    xs = torch.cat([ddrm_sample(model, y, op, 2 * 0.05, steps=3, schedule=betas.float(),
                                generator=torch.Generator().manual_seed(seed), clip_x0=True)
                    for seed in sample_seeds(3, g)])
    assert (xs[0] - xs[1]).abs().max() > 0.1  # three different samples, not one thrice
    got = np.asarray(Image.open(out / "face_sr4_restored.png")).astype(int)
    assert np.abs(got - to_uint8(xs.mean(0)).astype(int)).max() <= 1  # 8-bit rounding only
    assert np.abs(got - to_uint8(xs[0]).astype(int)).max() > 10
    assert read_png_info(str(out / "face_sr4_restored.png"))["samples"] == 3
    picture, top = std_picture(xs.std(0))
    # the scale by hand: the RMS over channels of the std, in [0, 1] pixel units (half the [-1, 1] units)
    assert top == pytest.approx(float(xs.std(0).pow(2).mean(0).sqrt().max()) / 2, rel=1e-5)
    info = read_png_info(str(out / "face_sr4_std.png"))
    assert info["kind"] == "std" and info["samples"] == 3 and info["std_max"] == pytest.approx(top, abs=1e-4)
    got = np.asarray(Image.open(out / "face_sr4_std.png")).astype(int)
    assert got.shape == (32, 32 + 58, 3) and np.abs(got - to_uint8(picture).astype(int)).max() <= 2
    figure = np.asarray(Image.open(out / "face_sr4_compare.png"))
    assert figure.shape[1] == 4 * 32 + (32 + 58) + 6 * 6  # clean | degraded | bicubic | DDRM | spread
    _fails(["restore", small_png, "--task", "sr4", "--samples", "0"], tmp_path, capsys, "argument --samples")


def test_folder_samples_write_the_mean_and_the_spread_per_image(small_png, tmp_path, capsys):
    """--input-dir with --samples 2: OUT/<name>.png is the one-image command's mean, OUT/std/<name>.png its spread
    (the same seed, the same streams: chunks of the batch size change nothing)."""
    from ddrm_fast.batch.manifest import default_seed
    from ddrm_fast.imageio import read_png_info

    folder = tmp_path / "in"
    folder.mkdir()
    os.replace(small_png, folder / "face.png")
    one, many = tmp_path / "one", tmp_path / "many"
    seed = str(default_seed("face.png"))  # a folder's image without a manifest entry has the seed of its name
    assert cli(["restore", str(folder / "face.png"), "--task", "deno", "--steps", "3", "--samples", "3", "-o",
                str(one), "--no-progress", "--exact", "--seed", seed]) == 0
    assert cli(["restore", "--input-dir", str(folder), "--task", "deno", "--steps", "3", "--samples", "3",
                "--batch-size", "2", "-o", str(many), "--no-progress", "--exact", "--num-workers", "0",
                "--compare"]) == 0
    for a, b in (("face_deno_restored.png", "face.png"), ("face_deno_std.png", "std/face.png")):
        pa, pb = np.asarray(Image.open(one / a)).astype(int), np.asarray(Image.open(many / b)).astype(int)
        assert np.abs(pa - pb).max() <= 1, (a, b)
    assert read_png_info(str(many / "std" / "face.png"))["samples"] == 3
    assert np.asarray(Image.open(many / "compare" / "face.png")).shape[1] == 4 * 32 + 90 + 6 * 6
    report = [json.loads(line) for line in open(many / "report.jsonl")]
    assert [(r["name"], r["status"], r["samples"]) for r in report] == [("face.png", "ok", 3)]


def test_restore_compare_writes_the_side_by_side_figure(small_png, tmp_path, capsys):
    from ddrm_fast.imageio import read_png_info

    out, fig = tmp_path / "out", tmp_path / "fig.png"
    assert cli(["restore", small_png, "--task", "deblur_uni", "--steps", "3", "-o", str(out), "--no-progress",
                "--compare", str(fig)]) == 0
    text = capsys.readouterr().out
    assert f"wrote {fig}" in text and "Wiener" in text
    assert read_png_info(str(fig))["kind"] == "compare"
    assert Image.open(fig).size[0] == 4 * 32 + 5 * 6  # clean | degraded | Wiener | DDRM
    restored = np.asarray(Image.open(out / "face_deblur_uni_restored.png"))
    assert np.array_equal(np.asarray(Image.open(fig))[6:38, 6 + 3 * 38:6 + 3 * 38 + 32], restored)
    # the default name, in OUT_DIR
    assert cli(["restore", small_png, "--task", "sr4", "--steps", "2", "-o", str(out), "--no-progress",
                "--compare"]) == 0
    assert (out / "face_sr4_compare.png").exists()
    # a file of the user's at that path, or a missing folder: refused before any work
    Image.new("RGB", (4, 4)).save(tmp_path / "mine.png")
    _fails(["restore", small_png, "--task", "sr4", "--compare", str(tmp_path / "mine.png")], tmp_path, capsys,
           "mine.png exists and was not written by ddrm-fast")
    _fails(["restore", small_png, "--task", "sr4", "--compare", str(tmp_path / "no" / "f.png")], tmp_path, capsys,
           "does not exist")


@pytest.mark.parametrize("where", ["out", "."])
def test_a_read_only_output_folder_is_refused_before_sampling(small_png, read_only_disk, monkeypatch, capsys, where):
    from ddrm_fast import restoration

    def never(*args, **kwargs):
        raise AssertionError("sampled for an output that cannot be written")

    monkeypatch.setattr(restoration, "ddrm_sample", never)
    out = read_only_disk / where
    code = cli(["restore", small_png, "--task", "deno", "-o", str(out), "--steps", "2", "--no-progress"])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and err == [f"ddrm-fast: error: -o {out}: {os.path.normpath(read_only_disk)} cannot be written"]
