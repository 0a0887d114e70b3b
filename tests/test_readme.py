"""The README's examples of its own-degradation section run as written: the custom operator in Python, and the
command lines (in a fresh folder, the package's data where the README's paths say: a folder named ddrm_fast there
would shadow the package, so the paths are made absolute)."""
import os
import re
import shlex
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..")
README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
SECTION = README.split("## Your own degradation, and what the model is unsure of", 1)[1].split("\n## ", 1)[0]


def test_the_custom_operator_example_runs_and_restores(tmp_path, monkeypatch, capsys):
    block = next(b for b in re.findall(r"```python\n(.*?)```", SECTION, re.S) if "class Lattice" in b)
    assert len(block.strip().splitlines()) <= 30
    monkeypatch.chdir(ROOT)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    out = capsys.readouterr().out
    assert "'V^T V = I': 0.0" in out and "torch.Size([1, 3, 64, 64])" in out
    from ddrm_fast.metrics import psnr

    x, y, op = scope["x"], scope["y"], scope["op"]
    assert psnr(scope["restored"], x) > psnr(op.H_pinv(y), x) + 1  # more than the kept pixels alone


def test_the_command_lines_run_as_written(tmp_path):
    block = re.findall(r"```bash\n(.*?)```", SECTION, re.S)[0]
    commands = [line for line in block.splitlines() if line.startswith("ddrm-fast ")]
    assert len(commands) == 4
    data = os.path.abspath(os.path.join(ROOT, "ddrm_fast", "data")) + "/"
    for command in commands:
        words = [w.replace("ddrm_fast/data/", data) for w in shlex.split(command)[1:]]
        argv = [sys.executable, "-m", "ddrm_fast"] + words + ["--no-progress"]
        p = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True)
        assert p.returncode == 0, (command, p.stderr)
    made = sorted(os.listdir(tmp_path / "out"))
    for name in ("astronaut_deblur_std.png", "astronaut_deblur_compare.png", "astronaut_resize_upsampled.png",
                 "astronaut_color_sr4_gray_upsampled.png", "astronaut_deblur_degraded_deblur_restored.png"):
        assert name in made, made
