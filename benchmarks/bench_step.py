"""One DDRM step (the update, not the network) per operator x batch x backend, at 3x256x256.

For every row: microseconds per step (median), for the one-pass group operators the achieved GB/s against a
device-to-device copy measured in the same run (bytes: read x_t and eps, write x_{t'}), and the speed-up over the
reference step in eager mode and under torch.compile. On CUDA also the step launched from a captured CUDA graph.
The reference step is what ddrm_sample(backend="reference") runs: draw the noise, V^T of x_t, eps and the noise, the
three-case update, V. Fused group steps are timed with a drawn noise tensor (noise="torch") and with in-kernel
Philox noise ("+philox"); the copy floor counts reading x_t, eps and y and writing x_{t'} (a noise tensor is
extra traffic, so "+philox" is the row to hold against the floor).

    python benchmarks/bench_step.py --device cuda --out benchmarks/results
    python benchmarks/bench_step.py --device cpu --batches 1,8 --out benchmarks/results_cpu

Writes bench_step.md, bench_step.csv and bench_step.png (when matplotlib is installed) into --out.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import time

import torch

from ddrm_fast import operators as O, reference as R
from ddrm_fast.backends import BACKENDS

GROUP = ("deno", "inp", "sr4", "color")
OPS = GROUP + ("deblur", "sr_bicubic4")


def make_op(name: str, size: int, device) -> O.LinearOperator:
    shape = (3, size, size)
    g = torch.Generator().manual_seed(0)
    op = {"deno": lambda: O.Denoise(shape),
          "inp": lambda: O.Inpaint((torch.rand(1, 1, size, size, generator=g) > 0.5).float(), channels=3),
          "sr4": lambda: O.SuperRes(4, shape),
          "color": lambda: O.Colorize(shape),
          "deblur": lambda: O.Blur([1 / 9] * 9, shape),
          "sr_bicubic4": lambda: O.SRBicubic(4, shape)}[name]()
    return op.to(device)


def timer(device):
    """(fn -> median seconds): CUDA events with an L2 flush between runs (triton's do_bench), or a host clock."""
    if device.type == "cuda":
        from triton.testing import do_bench

        return lambda fn: do_bench(fn, warmup=25, rep=200, return_mode="median") * 1e-3

    def host(fn, reps=20):
        fn()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    return host


def copy_bandwidth(device, bench) -> float:
    """Bytes read + written per second by a large device-to-device (or host) copy."""
    n = (256 << 20) // 4 if device.type == "cuda" else (64 << 20) // 4
    src = torch.randn(n, device=device)
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / bench(lambda: dst.copy_(src))


def problem(name: str, b: int, size: int, device):
    op = make_op(name, size, device)
    x = torch.randn(b, 3, size, size, device=device)
    eps = torch.randn_like(x)
    y = op.H(torch.randn_like(x)).reshape(b, -1).contiguous()
    s = op.singulars().reshape(-1, op.m).float()
    sy = torch.full((1, 1), 0.05, device=device)
    coef = torch.tensor([0.8, 0.6, 0.3, 0.85], device=device)
    seeds = torch.arange(b, device=device, dtype=torch.int64)
    return op, x, eps, y, s, sy, coef, seeds


def steps(name, op, y, s, sy, coef, seeds, device):
    """{backend: step(x, eps) -> x_{t'}}."""
    grouped = name in GROUP
    b = y.shape[0]

    def reference_step(x, eps):
        if grouped:
            z = torch.randn(x.shape, device=x.device)
            out, _ = R.spectral_step(op.Vt(x), op.Vt(eps), op.Vt(z), y, s, sy, coef, 0.85, 1.0)
        else:
            z = torch.randn(b, op.n, device=x.device)
            out, _ = R.spectral_step(op.Vt(x), op.Vt(eps), z, y, s, sy, coef, 0.85, 1.0)
        return op.V(out)

    out = {"reference": reference_step}
    fused = ["cpu"] if device.type == "cpu" else ["cuda", "triton"]
    for be in fused:
        if not BACKENDS[be].available(device):  # not built (or no GPU) here
            continue
        spectral, group = BACKENDS[be].spectral_step, BACKENDS[be].group_step
        if grouped:
            k = op.weights.to(device)
            obs = op.observed

            def f(x, eps, group=group, k=k, obs=obs):  # noise="torch": a drawn noise tensor, read by the kernel
                z = torch.randn(x.shape, device=x.device)
                return group(x, eps, y, k, obs, sy, coef, z, None, 0, op.group_shape, 0.85, 1.0)[0]

            def fp(x, eps, group=group, k=k, obs=obs):  # noise="philox": generated in the kernel
                return group(x, eps, y, k, obs, sy, coef, None, seeds, 1, op.group_shape, 0.85, 1.0)[0]
            out[be + "+philox"] = fp
        else:
            def f(x, eps, spectral=spectral):
                z = torch.randn(b, op.n, device=x.device)
                return op.V(spectral(op.Vt(x), op.Vt(eps), z, y, s, sy, coef, 0.85, 1.0)[0])
        out[be] = f
    return out


def graph_time(fn, x, eps, bench) -> float:
    """One step replayed from a captured CUDA graph (warm-up on a side stream first)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn(x, eps)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn(x, eps)
    return bench(g.replay)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batches", default="1,8,64")
    p.add_argument("--ops", default=",".join(OPS))
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile'd reference")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    bench = timer(device)
    bw = copy_bandwidth(device, bench)
    print(f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, torch {torch.__version__}, "
          f"copy {bw / 1e9:.0f} GB/s", flush=True)
    rows = []
    for name in args.ops.split(","):
        compiled_ref = None
        torch.compiler.reset()  # a fresh compile cache per operator (no recompile-limit fallbacks)
        for b in (int(v) for v in args.batches.split(",")):
            op, x, eps, y, s, sy, coef, seeds = problem(name, b, args.size, device)
            fns = steps(name, op, y, s, sy, coef, seeds, device)
            t_ref = bench(lambda: fns["reference"](x, eps))
            t_comp = None
            if not args.no_compile:
                if compiled_ref is None or compiled_ref[0] != b:
                    compiled_ref = (b, torch.compile(fns["reference"]))
                cf = compiled_ref[1]
                cf(x, eps)
                t_comp = bench(lambda: cf(x, eps))
            # bytes a one-pass step must move: read x_t, eps and y (image-sized for denoise/inpaint), plus a
            # per-sample mask when there is one; write x_{t'}
            floor_bytes = None
            if name in GROUP:
                floor_bytes = 4 * (3 * x.numel() + y.numel())
                if op.observed is not None and op.observed.shape[0] > 1:
                    floor_bytes += 4 * op.observed.numel()
            for be, fn in fns.items():
                t = t_ref if be == "reference" else bench(lambda: fn(x, eps))
                t_graph = graph_time(fn, x, eps, bench) if (device.type == "cuda" and be != "reference") else None
                row = {"op": name, "batch": b, "backend": be, "us_per_step": t * 1e6,
                       "us_graph": None if t_graph is None else t_graph * 1e6,
                       "GB_s": None if floor_bytes is None else floor_bytes / t / 1e9,
                       "x_copy_floor": None if floor_bytes is None else t / (floor_bytes / bw),
                       "speedup_vs_ref": t_ref / t,
                       "speedup_vs_compiled_ref": None if t_comp is None else t_comp / t}
                rows.append(row)
                print("  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                      flush=True)
            if t_comp is not None:
                rows.append({"op": name, "batch": b, "backend": "reference+compile", "us_per_step": t_comp * 1e6,
                             "us_graph": None, "GB_s": None, "x_copy_floor": None, "speedup_vs_ref": t_ref / t_comp,
                             "speedup_vs_compiled_ref": 1.0})
    write(rows, args.out, device, bw)


def write(rows, out, device, bw):
    os.makedirs(out, exist_ok=True)
    keys = list(rows[0].keys())
    with open(os.path.join(out, "bench_step.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)
    fmt = lambda v: "-" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = [f"copy bandwidth {bw / 1e9:.0f} GB/s (read + write) on {device}", "",
             "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
    with open(os.path.join(out, "bench_step.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    batches = sorted({r["batch"] for r in rows})
    fig, axes = plt.subplots(1, len(batches), figsize=(5 * len(batches), 4), squeeze=False)
    for ax, b in zip(axes[0], batches):
        sub = [r for r in rows if r["batch"] == b]
        ops = sorted({r["op"] for r in sub}, key=lambda o: OPS.index(o))
        bes = sorted({r["backend"] for r in sub})
        width = 0.8 / len(bes)
        for k, be in enumerate(bes):
            vals = [next((r["us_per_step"] for r in sub if r["op"] == o and r["backend"] == be), 0) for o in ops]
            ax.bar([i + k * width for i in range(len(ops))], vals, width, label=be)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(ops))], ops, rotation=30)
        ax.set_yscale("log")
        ax.set_title(f"batch {b}")
        ax.set_ylabel("us per step")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "bench_step.png"), dpi=110)


if __name__ == "__main__":
    main()
