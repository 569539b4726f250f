"""``fantasy-portrait app``: the web page (Gradio; ``pip install 'fantasy-portrait[app]'``)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "app",
        help="a web page to upload, check faces and mapping, set the controls, run and download (Gradio)",
        description="Start the FantasyPortrait web app: upload a portrait and driving video(s) or load an "
        "example, see the numbered faces and the tracked driving faces, change the mapping, set the "
        "controls, run with live progress, cancel, and download the result and the side-by-side. The "
        "built-in synthetic example runs on any CPU with the shipped tiny model; with --weights the "
        "released model runs too. One run at a time uses the device; others wait in the queue. "
        "Needs the [app] extra (gradio).",
    )
    p.add_argument(
        "--weights",
        help="folder with the released weight files (as for animate); default: $FANTASY_PORTRAIT_WEIGHTS, "
        "else only the tiny synthetic model is offered",
    )
    p.add_argument(
        "--examples",
        help="folder of example portraits and driving videos offered with --weights (examples.json, or "
        "videos named after the image's stem); default: $FANTASY_PORTRAIT_EXAMPLES",
    )
    p.add_argument(
        "--server-name", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)"
    )
    p.add_argument(
        "--port", type=int, default=None, help="port (default: Gradio's, 7860 or the next free one)"
    )
    p.add_argument("--share", action="store_true", help="also make a public gradio.live link")
    p.add_argument("--workdir", help="folder for previews and results (default: a new temporary folder)")
    p.add_argument(
        "--device", help="torch device for the released model (default: cuda if available, else cpu)"
    )
    p.add_argument(
        "--dtype", choices=["bf16", "fp16", "fp32"], help="model dtype (default bf16 on GPU, fp32 on CPU)"
    )
    p.add_argument(
        "--memory",
        default="auto",
        choices=["auto", "gpu", "model-offload", "sequential"],
        help="where the released model lives on an accelerator (as animate's --memory)",
    )
    p.add_argument("--face-backend", default="mediapipe", help="face detector backend: mediapipe or onnx")
    p.set_defaults(func=run)


def run(args) -> int:
    import importlib.util

    from ..errors import FantasyPortraitError, InputError

    if importlib.util.find_spec("gradio") is None:
        raise FantasyPortraitError("the app needs gradio: pip install 'fantasy-portrait[app]'")
    if args.port is not None and not 0 < args.port < 65536:
        raise InputError(f"--port must be in 1..65535, got {args.port}")
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home unless the user asks
    from ..app import AppEngine, build_app, launch

    engine = AppEngine(
        weights=args.weights,
        examples=args.examples,
        workdir=args.workdir,
        device=args.device,
        dtype=args.dtype,
        memory_mode=args.memory,
        face_backend=args.face_backend,
    )
    demo = build_app(engine)
    launch(demo, server_name=args.server_name, port=args.port, share=args.share)
    return 0
