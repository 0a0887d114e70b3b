import subprocess
import sys

from ddrm_fast.cli import demo


def test_demo_restores_what_the_pseudo_inverse_cannot():
    for task in ("inp", "color", "deblur"):
        r = demo.run(task, sigma_y=0.05, steps=20, size=32, seed=0, backend="reference")
        assert r["psnr_ddrm"] > r["psnr_pinv"] + 3, r


def test_demo_command_prints_a_table():
    out = subprocess.run([sys.executable, "-m", "ddrm_fast", "demo", "--size", "32", "--task", "sr4"],
                         capture_output=True, text=True, check=True).stdout
    assert "PSNR DDRM" in out and "sr4" in out


def test_bad_size_is_one_line_and_nonzero():
    p = subprocess.run([sys.executable, "-m", "ddrm_fast", "demo", "--size", "30", "--task", "sr4"],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == ["ddrm-fast: error: ratio 4 does not divide the image size 30x30"]
