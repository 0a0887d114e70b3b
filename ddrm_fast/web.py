"""The web page of ``ddrm-fast serve``: drop a photo, pick a degradation, see the result beside the input.

Built on Gradio (the optional extra ``pip install 'ddrm_fast[web]'``; nothing else imports this module). It runs the
library's one restoration pipeline (:func:`ddrm_fast.restoration.measure` and
:func:`~ddrm_fast.restoration.restore_image`, what ``ddrm-fast restore`` runs) and promises (docs/serve.md):

- uploads are read by the command line's readers (regular files only, the size read from the header and checked
  against the server's limit and PIL's decompression-bomb limit before any pixel is decoded); a bad file, a wrong
  size or any failure is one sentence on the page, and the server goes on serving;
- everything it writes is under one temporary folder, a folder per visitor's session removed when the session ends
  (and the whole folder when the server stops); it fetches nothing from the internet (no analytics, no web fonts);
- one sampling job per device at a time (a queue), and a visitor's job is cancelled when the visitor leaves.
"""
import os
import shutil
import signal
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch

from . import restoration, speed, tasks
from ._utils import one_line
from .figures import comparison_panels, render, std_panel
from .imageio import image_size, read_image, read_kernel, read_mask, write_png
from .operators import KERNELS_1D

__all__ = ["Server", "build_app", "BUNDLED"]

DATA = os.path.join(os.path.dirname(__file__), "data")
#: the bundled photos a visitor can pick (held out from the embedded model's training)
BUNDLED = ("coffee.png", "astronaut.png")
_UPLOAD = "(my upload)"
#: the kernel of deblur when the visitor gives none
MOTION_BLUR = os.path.join(DATA, "motion_blur.png")


class Cancelled(Exception):
    """The visitor left: the job stops at the next step."""


@dataclass
class Server:
    """What the page serves with: the model, once loaded, where it runs, the limits, and the temporary folder."""

    model: torch.nn.Module
    betas: torch.Tensor
    device: torch.device
    #: the longest side an uploaded image may have
    max_side: int = 512
    root: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="ddrm-fast-serve-"))
    _left: Dict[str, bool] = field(default_factory=dict)  # sessions whose visitor left
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def session_folder(self, session: str) -> str:
        path = os.path.join(self.root, "sessions", session)
        os.makedirs(path, exist_ok=True)
        return path

    def end_session(self, session: str) -> None:
        """The visitor left: cancel the job, remove what was written for them."""
        with self._lock:
            self._left[session] = True
        shutil.rmtree(os.path.join(self.root, "sessions", session), ignore_errors=True)

    def gone(self, session: str) -> bool:
        with self._lock:
            return self._left.get(session, False)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # --- one request ------------------------------------------------------------------------------------------
    def read_input(self, path: Optional[str], bundled: str, task: str, observed: bool) -> Tuple[torch.Tensor, str]:
        """The photo (C, H, W) in [-1, 1] and its name: the upload (its size checked first) or a bundled photo."""
        if bundled and bundled != _UPLOAD:
            if bundled not in BUNDLED:
                raise ValueError(f"there is no bundled photo {bundled!r}")
            path, name = os.path.join(DATA, bundled), bundled
        elif not path:
            raise ValueError("upload a photo (PNG or JPEG) or pick a bundled one")
        else:
            name = os.path.basename(path)
        h, w = image_size(path, "the photo")
        if max(h, w) > self.max_side:
            raise ValueError(f"the photo is {w}x{h}; this server takes at most {self.max_side} pixels a side "
                             f"(make it smaller first)")
        return read_image(path, tasks.input_modes(task, observed), what="the photo"), name

    def restore(self, session: str, request: dict, progress=None) -> dict:
        """Run one restoration as ``ddrm-fast restore`` does; returns what the page shows. ValueError: the visitor's
        input (one sentence)."""
        task, observed = request["task"], bool(request["observed"])
        image, name = self.read_input(request.get("photo"), request.get("bundled", ""), task, observed)
        kernel = read_kernel(request.get("kernel") or MOTION_BLUR, "the kernel") if task == "deblur" else None
        options = tasks.Options(kernel=kernel, scale=float(request.get("scale") or 2.0),
                                kernel_1d=request.get("kernel_1d", "bicubic"))
        mask = read_mask(request["mask"], image.shape[-2:]) if request.get("mask") and task == "inp" else None
        sigma_y, steps, samples = float(request["sigma_y"]), int(request["steps"]), int(request["samples"])
        m = restoration.measure(task, image, sigma_y=sigma_y, seed=int(request.get("seed", 0)), observed=observed,
                                mask=mask, options=options)
        restoration.check_size(restoration.model_divisor(self.model), *m.operator.image_shape[1:])
        base = restoration.Settings(steps=steps, eta=float(request["eta"]), clip_x0=True)
        settings = speed.auto(self.device, task).settings(base)
        total, done = steps * samples, [0]

        def step(info):  # after every DDRM step: progress, and a visitor who left stops the job
            if self.gone(session):
                raise Cancelled()
            done[0] += 1
            if progress is not None:
                progress((min(done[0], total), total), desc="sampling", unit="steps")

        r = restoration.restore_image(self.model, self.betas, m, settings, self.device, samples, callback=step)
        folder = self.session_folder(session)
        stem = os.path.splitext(name)[0]
        download = os.path.join(folder, f"{stem}_{task}_restored.png")
        write_png(r.restored, download, {"name": name, "task": task, "sigma_y": sigma_y, "samples": samples})
        label = "DDRM" if samples == 1 else f"DDRM, mean of {samples}"
        panels = comparison_panels(m.clean, r.degraded, r.baseline_name, r.baseline, r.restored,
                                   f"({task}, sigma_y {sigma_y:g})", label)
        if r.std is not None:
            panels.append(std_panel(r.std, samples))
        return {"figure": render(panels), "restored": download, "scores": _scores_line(r, label),
                "seconds": r.seconds}


def _scores_line(r: restoration.Restored, label: str) -> str:
    if r.scores is None:
        return f"Restored in {r.seconds:.1f} s (the input was already degraded: no clean image to score against)."
    s = r.scores
    return (f"**{label}**: PSNR {s.psnr:.2f} dB, SSIM {s.ssim:.3f} — "
            f"**{s.baseline}**: PSNR {s.psnr_baseline:.2f} dB, "
            f"SSIM {s.ssim_baseline:.3f} — {s.psnr - s.psnr_baseline:+.2f} dB against {s.baseline}; "
            f"restored in {r.seconds:.1f} s.")


def _no_web_fonts(gr):
    """The default theme with the system's fonts: Gradio 6's default serves its fonts itself, earlier versions'
    loaded Google's; the system's keep the page offline whatever the version."""
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"])


#: the request's fields, in the order of the page's inputs
_FIELDS = ("photo", "bundled", "observed", "task", "sigma_y", "steps", "eta", "samples", "kernel", "mask", "scale",
           "kernel_1d")


def _inputs(gr) -> dict:
    """The page's input components, by request field (laid out as they are created)."""
    with gr.Row():
        with gr.Column():
            photo = gr.File(label="Photo (PNG or JPEG)", file_types=["image"], elem_id="photo")
            bundled = gr.Dropdown([_UPLOAD, *BUNDLED], value=_UPLOAD, label="or a bundled photo", elem_id="bundled")
            observed = gr.Checkbox(False, label="observed: the photo is already degraded", elem_id="observed")
        with gr.Column():
            task = gr.Dropdown(list(tasks.TASKS), value="sr4", label="Task", elem_id="task")
            sigma_y = gr.Slider(0, 0.5, value=0.05, step=0.01, label="sigma_y (noise, pixel units)", elem_id="sigma_y")
            steps = gr.Slider(1, 200, value=20, step=1, label="steps", elem_id="steps")
            eta = gr.Slider(0, 1, value=0.85, step=0.05, label="eta", elem_id="eta")
            samples = gr.Slider(1, 16, value=1, step=1, label="samples (more: their mean and spread)",
                                elem_id="samples")
    with gr.Accordion("Task options: the blur kernel (deblur), the mask (inp), the scale (resize)", open=False):
        with gr.Row():
            kernel = gr.File(label="Blur kernel (deblur: .npy or an image; none: the bundled 9-pixel motion blur)",
                             elem_id="kernel")
            mask = gr.File(label="Mask (inp: white = observed; none: half the pixels at random)",
                           file_types=["image"], elem_id="mask")
            with gr.Column():
                scale = gr.Number(2.0, label="Scale (resize)", elem_id="scale")
                kernel_1d = gr.Dropdown(list(KERNELS_1D), value="bicubic", label="1-D kernel (resize)",
                                        elem_id="kernel_1d")
    return dict(zip(_FIELDS, (photo, bundled, observed, task, sigma_y, steps, eta, samples, kernel, mask, scale,
                              kernel_1d)))


def build_app(server: Server, concurrency: int = 1):
    """The Gradio Blocks of the page, its queue limited to ``concurrency`` jobs at once."""
    import gradio as gr

    with gr.Blocks(title="ddrm-fast", delete_cache=(300, 900)) as app:
        gr.Markdown("# ddrm-fast\nRestore a photo with DDRM: pick a degradation, see it beside the classical "
                    "baseline. A clean photo is degraded first, then restored and scored; an already degraded one "
                    "(tick *observed*) is restored as it is.")
        inputs = _inputs(gr)
        run = gr.Button("Restore", variant="primary", elem_id="run")
        scores = gr.Markdown(elem_id="scores")
        figure = gr.Image(label="clean | degraded | baseline | DDRM", type="numpy", format="png", interactive=False,
                          elem_id="figure")
        download = gr.File(label="The restored PNG", interactive=False, elem_id="download")

        def go(photo, bundled, observed, task, sigma_y, steps, eta, samples, kernel, mask, scale, kernel_1d,
               request: gr.Request, progress=gr.Progress()):  # Gradio passes the inputs by position, named here
            values = (photo, bundled, observed, task, sigma_y, steps, eta, samples, kernel, mask, scale, kernel_1d)
            try:
                out = server.restore(request.session_hash or "anonymous", dict(zip(_FIELDS, values)), progress)
            except Cancelled:
                return None, None, ""
            except ValueError as exc:  # the visitor's input: one sentence on the page
                raise gr.Error(one_line(exc), print_exception=False) from None
            except Exception as exc:  # noqa: BLE001 - never a traceback on the page; the server keeps serving
                raise gr.Error(f"the restoration failed: {type(exc).__name__}: {one_line(exc)}",
                               print_exception=False) from None
            return out["figure"], out["restored"], out["scores"]

        def leave(request: gr.Request):
            server.end_session(request.session_hash or "anonymous")

        run.click(go, list(inputs.values()), [figure, download, scores], concurrency_limit=concurrency)
        app.unload(leave)
    return app


def launch(server: Server, host: str = "127.0.0.1", port: int = 7860, concurrency: int = 1,
           max_upload_mb: float = 20.0, ready=None) -> None:
    """Serve the page until interrupted; everything it wrote is removed when it stops."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["GRADIO_TEMP_DIR"] = os.path.join(server.root, "uploads")  # gradio's own copies of uploads
    import gradio as gr

    # SIGTERM (a service manager, a test) stops it as Ctrl-C does: Gradio closes its server, the finally cleans up
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        app = build_app(server, concurrency)
        app.queue(default_concurrency_limit=concurrency)
        app.launch(server_name=host, server_port=port, max_file_size=int(max_upload_mb * 2**20),
                   theme=_no_web_fonts(gr), show_error=True, quiet=True, ssr_mode=False, footer_links=[],
                   prevent_thread_lock=True, inbrowser=False, share=False)
        print(f"ddrm-fast serve: http://{host}:{port} (model on {server.device}; Ctrl-C stops)", flush=True)
        if ready is not None:
            ready()
        app.block_thread()
    finally:
        server.close()
