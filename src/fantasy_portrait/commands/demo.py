"""``fantasy-portrait demo``: animate a synthetic two-character portrait with the shipped tiny model."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="animate a synthetic two-character portrait with the built-in tiny model (no downloads)",
        description="Renders a two-character synthetic portrait and two driving clips of other identities, "
        "animates the portrait with the tiny FantasyPortrait shipped in the package (through the same "
        "pipeline as `animate`), and writes the result, a side-by-side video (drivers | result | ground "
        "truth) and a metrics table against the exact ground truth (docs/demo.md).",
    )
    parser.add_argument(
        "-o",
        "--output",
        default="fantasy_portrait_demo",
        help="output folder (default ./fantasy_portrait_demo)",
    )
    parser.add_argument("--seed", type=int, default=0, help="scene, performance and noise seed (default 0)")
    parser.add_argument(
        "--steps", type=int, default=None, help="denoising steps (default: the recorded demo's)"
    )
    parser.add_argument(
        "--guidance", type=float, default=None, help="motion guidance scale (default: the recorded demo's)"
    )
    parser.add_argument(
        "--weights",
        default=None,
        help="a tiny synthetic model file, or the name of another shipped one: linear (the earlier "
        "default, on the blurrier linear latent) or disentangled (that one fine-tuned on the "
        "part-disentangled motion encoder) (default: the shipped default model)",
    )
    parser.add_argument(
        "--exact-boxes",
        action="store_true",
        help="give the pipeline the renderer's exact portrait face boxes instead of detecting them",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--open",
        action="store_true",
        help="open the contact sheet with the platform's image viewer (or print where it is)",
    )
    parser.set_defaults(func=_run)


def _run(args) -> int:
    import json
    import time

    import torch

    from ..errors import InputError
    from ..synthetic.demo import DEFAULT_GUIDANCE, DEFAULT_STEPS, run_demo
    from ..synthetic.tiny_model import RECORD_PATH, resolve_weights

    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    from ..io import check_output_folder, new_output_folder

    out = check_output_folder(args.output, "demo folder")
    steps, guidance = DEFAULT_STEPS, DEFAULT_GUIDANCE
    if args.weights is None and RECORD_PATH.is_file():
        record = json.loads(RECORD_PATH.read_text())
        steps, guidance = record.get("num_steps", steps), record.get("motion_guidance", guidance)
    steps = args.steps if args.steps is not None else steps
    guidance = args.guidance if args.guidance is not None else guidance
    if steps < 1:
        raise InputError(f"--steps must be >= 1, got {steps}")
    t0 = time.perf_counter()
    with new_output_folder(out, "demo folder"):  # a failed or interrupted demo leaves no new folder
        result = run_demo(
            out,
            seed=args.seed,
            num_steps=steps,
            motion_guidance=guidance,
            weights=resolve_weights(args.weights),
            exact_boxes=args.exact_boxes,
            progress=not args.quiet,
        )
    wall = time.perf_counter() - t0
    print(f"weights: {result.weights}")
    print(f"faces: {result.faces_source}")
    print(f"steps: {steps}, motion guidance: {guidance}, seed: {args.seed}")
    print()
    print(result.table())
    print()
    print(
        "motion MAE: normalised units (ranges mapped to [-1, 1]) of the judge network's estimates (trained "
        "apart from the motion encoder), frames 1..16; lower is better. face PSNR / SSIM: inside each face's "
        "ground-truth box; higher is better. follow / leak: slope of a face's estimated motion on its own "
        "driver's / the other driver's parameters; on one 16-frame case they are rough (see the ground truth's "
        "own leak), benchmarks/demo.md pools 20 cases."
    )
    print()
    print(result.summary)
    print()
    for name in ("result", "side_by_side", "ground_truth", "metrics", "table"):
        print(f"{name:>13}: {result.files[name]}")
    sheet, plot = result.files["contact_sheet"], result.files["motion_plot"]
    print()
    print(f"look at this picture: {sheet.resolve()}  (drivers | result | ground truth, faces labelled)")
    print(
        f"and this plot:        {plot.resolve()}  (each face's motion against its own and the other driver)"
    )
    if args.open:
        from ..synthetic.figures import open_file

        if not open_file(sheet):
            print(f"no image viewer found here: open {sheet.resolve()} yourself")
    print(f"took {wall:.1f} s ({torch.get_num_threads()} torch threads)")
    return 0
