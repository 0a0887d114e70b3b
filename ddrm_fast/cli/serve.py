"""`ddrm-fast serve`: the web page (``ddrm_fast.web``; the optional extra ``pip install 'ddrm_fast[web]'``)."""
from __future__ import annotations

import importlib.util

from .args import device_arg, positive_float, positive_int
from .options import choose_device, load_model

__all__ = ["add_parser", "main"]


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="a web page: upload a photo, pick a degradation, see DDRM beside the baseline",
                       description="Serve the restoration page (Gradio) until Ctrl-C. It listens on 127.0.0.1 "
                                   "unless --host says otherwise, runs one sampling job per device at a time, and "
                                   "keeps everything it writes in a temporary folder it removes.")
    p.add_argument("--model", default="embedded", help="a checkpoint file or diffusers folder, or 'embedded' (the "
                                                       "bundled model; the default)")
    p.add_argument("--device", type=device_arg, default=None, help="default: cuda when available, else cpu")
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=positive_int, default=7860)
    p.add_argument("--concurrency", type=positive_int, default=1, help="sampling jobs at once (each needs the "
                                                                       "memory of one)")
    p.add_argument("--max-side", type=positive_int, default=512, help="the longest side an uploaded image may have")
    p.add_argument("--max-upload-mb", type=positive_float, default=20.0, help="the largest upload, in megabytes")


def main(args) -> int:
    if importlib.util.find_spec("gradio") is None:
        raise ValueError("ddrm-fast serve needs the web extra: pip install 'ddrm_fast[web]'")
    if args.port > 65535:
        raise ValueError(f"--port must be at most 65535, got {args.port}")
    from .. import web

    device = choose_device(args.device)
    model, betas = load_model(None if args.model == "embedded" else args.model, device)
    server = web.Server(model, betas, device, max_side=args.max_side)
    try:
        web.launch(server, args.host, args.port, args.concurrency, args.max_upload_mb)
    except OSError:  # the port is taken, the address is not this machine's
        raise ValueError(f"cannot listen on {args.host}:{args.port} (the port is in use, or the address is not this "
                         f"machine's); choose another --port or --host") from None
    return 0
