"""What the README and docs/ show runs as shown: the Python examples are executed, the command lines of the own-
degradation page run, every `ddrm-fast` command line in them parses with the command's own parser, and `make demo`
runs what the README says it runs."""
import inspect
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DOCS = sorted(os.path.join(ROOT, "docs", n) for n in os.listdir(os.path.join(ROOT, "docs")) if n.endswith(".md"))


def _read(path):
    return open(path, encoding="utf-8").read()


README = _read(os.path.join(ROOT, "README.md"))
DEGRADATIONS = _read(os.path.join(ROOT, "docs", "degradations.md"))


def _python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, re.S)


def _commands(text):
    """Every `ddrm-fast ...` line of the text's bash blocks (continuation lines joined, comments cut)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            for prefix in (".venv/bin/", "python -m ddrm_fast "):
                line = line.replace(prefix, "ddrm-fast " if prefix.startswith("python") else "")
            if line.startswith("ddrm-fast "):
                out.append(line)
    return out


def test_the_readme_library_example_restores_the_photo(monkeypatch):
    from ddrm_fast.metrics import psnr
    from ddrm_fast.tasks import bicubic

    block = next(b for b in _python_blocks(README) if "ddrm_sample(" in b)
    monkeypatch.chdir(ROOT)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    x, y, op = scope["x"], scope["y"], scope["op"]
    assert scope["restored"].shape == x.shape == (1, 3, 256, 384)
    assert psnr(scope["restored"], x) > psnr(bicubic(op, y, 0.1), x)  # ahead of the baseline a user has in mind


def test_the_readme_drop_in_example_names_the_original_call():
    block = next(b for b in _python_blocks(README) if "efficient_generalized_steps(" in b)
    scope: dict = {}
    exec(block.splitlines()[0], scope)  # the import line
    call = block.split("efficient_generalized_steps(", 1)[1]
    keywords = re.findall(r"(\w+)=", call)
    params = inspect.signature(scope["efficient_generalized_steps"]).parameters
    assert list(params)[:7] == ["x", "seq", "model", "b", "H_funcs", "y_0", "sigma_0"]
    assert set(keywords) <= set(params)


def test_the_make_demo_command_is_the_one_the_readme_quotes():
    makefile = _read(os.path.join(ROOT, "Makefile"))
    recipe = makefile.split("\ndemo: setup\n", 1)[1].splitlines()[0].strip()
    quoted = re.search(r"`make demo` runs `(ddrm-fast restore .*?)`", README.replace("\n", " "), re.S).group(1)
    assert recipe == "$(PY) -m ddrm_fast " + quoted[len("ddrm-fast "):]


@pytest.mark.parametrize("path", [os.path.join(ROOT, "README.md")] + DOCS, ids=os.path.basename)
def test_every_command_line_shown_parses(path):
    """Each `ddrm-fast` line parses with the command's parser: the commands, flags and values it shows exist (a GPU
    device is parsed as the CPU here, placeholders in brackets are synopses and skipped)."""
    from ddrm_fast.cli.main import build_parser

    for line in _commands(_read(path)):
        if "[" in line or "..." in line:
            continue
        words = [w if w not in ("cuda", "cuda:0", "cuda:1") else "cpu" for w in shlex.split(line)[1:]]
        try:
            build_parser().parse_args(words)
        except SystemExit as exc:
            pytest.fail(f"{os.path.basename(path)}: {line!r} does not parse (exit {exc.code})")


def test_the_custom_operator_example_runs_and_restores(monkeypatch, capsys):
    from ddrm_fast.metrics import psnr

    block = next(b for b in _python_blocks(DEGRADATIONS) if "class Lattice" in b)
    assert len(block.strip().splitlines()) <= 30
    monkeypatch.chdir(ROOT)
    scope: dict = {}
    exec(compile(block, "degradations.md", "exec"), scope)
    out = capsys.readouterr().out
    assert "'V^T V = I': 0.0" in out and "torch.Size([1, 3, 64, 64])" in out
    x, y, op = scope["x"], scope["y"], scope["op"]
    assert psnr(scope["restored"], x) > psnr(op.H_pinv(y), x) + 1  # more than the kept pixels alone


def test_the_own_degradation_command_lines_run_as_written(tmp_path):
    """In a fresh folder, the package's data where the paths say (made absolute: a folder named ddrm_fast there
    would shadow the package)."""
    commands = _commands(DEGRADATIONS.split("## Any convolution kernel")[0])
    assert len(commands) == 4
    data = os.path.join(ROOT, "ddrm_fast", "data") + "/"
    for command in commands:
        words = [w.replace("ddrm_fast/data/", data) for w in shlex.split(command)[1:]]
        p = subprocess.run([sys.executable, "-m", "ddrm_fast"] + words + ["--no-progress"], cwd=tmp_path,
                           capture_output=True, text=True)
        assert p.returncode == 0, (command, p.stderr)
    made = sorted(os.listdir(tmp_path / "out"))
    for name in ("astronaut_deblur_std.png", "astronaut_deblur_compare.png", "astronaut_resize_upsampled.png",
                 "astronaut_color_sr4_gray_upsampled.png", "astronaut_deblur_degraded_deblur_restored.png"):
        assert name in made, made
