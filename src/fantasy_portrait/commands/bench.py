"""``fantasy-portrait bench``: ExprBench manifests, method runs, scores and reports (see docs/bench.md)."""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="run and score portrait-animation methods on a benchmark manifest (ExprBench)",
        description="ExprBench: prepare a manifest's inputs, run methods, score them (SSIM, LMD, gaze MAE, "
        "AED, APD, optional FID/FVD) and write Markdown/CSV/JSON/PNG reports.",
    )
    sub = parser.add_subparsers(dest="bench_command", metavar="STEP")

    def manifest_arg(p):
        p.add_argument(
            "manifest", help="manifest .json/.toml, or 'example' for the built-in one over ../shared/assets"
        )
        p.add_argument("--assets", help="assets folder for the 'example' manifest (default ../shared/assets)")
        p.add_argument(
            "--out", "-o", required=True, help="run folder (inputs, outputs, cache, scores, report)"
        )

    run = sub.add_parser("run", help="produce outputs of one or more methods (cached, resumable)")
    manifest_arg(run)
    run.add_argument(
        "--method",
        "-m",
        action="append",
        required=True,
        help="repeat-portrait | copy-driver | ours | ours:OPTIONS.json | ours:tiny | command:TEMPLATE "
        "(placeholders {source} {driver} {drivers} {output} {fps} ...), optionally NAME=SPEC; see docs/bench.md",
    )
    run.add_argument("--force", action="store_true", help="regenerate outputs even when cached")
    run.add_argument("--score", action="store_true", help="score the methods afterwards and write the report")
    _extractor_args(run)
    run.set_defaults(func=_run)

    score = sub.add_parser("score", help="score methods' outputs in a run folder")
    manifest_arg(score)
    score.add_argument(
        "--method", "-m", action="append", required=True, help="method name (or spec) to score"
    )
    score.add_argument("--force", action="store_true", help="recompute scores even when cached")
    _extractor_args(score)
    score.set_defaults(func=_score)

    report = sub.add_parser("report", help="write report.md/.csv/.json and plots from a run folder's scores")
    report.add_argument("run_dir", help="run folder")
    report.add_argument("--report-dir", help="where to write (default RUN/report)")
    report.set_defaults(func=_report)

    example = sub.add_parser(
        "example-manifest", help="write the built-in example manifest as JSON (a template)"
    )
    example.add_argument("output", help="manifest file to write (.json)")
    example.add_argument("--assets", help="assets folder (default ../shared/assets)")
    example.add_argument("--frames", type=int, default=16)
    example.add_argument("--max-side", type=int, default=256)
    example.set_defaults(func=_example)

    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _extractor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fid-weights", help="pytorch-fid Inception weights (pt_inception-2015-12-05-6726825d.pth)"
    )
    p.add_argument("--fvd-weights", help="StyleGAN-V I3D TorchScript (i3d_torchscript.pt)")
    p.add_argument("--device", default="cpu", help="torch device for the FID/FVD extractors (default cpu)")
    p.add_argument(
        "--coeff-extractor",
        metavar="MODULE:FUNCTION",
        help="3DMM coefficient extractor for AED/APD (e.g. mypkg.recon:extract, called as "
        "f(frames, boxes) -> {'pose': (F,3), 'expression': (F,K)}); replaces the landmark AED/APD, see docs/bench.md",
    )


def _manifest(args):
    from ..bench.manifest import example_manifest, load_manifest
    from ..io import check_output_folder

    check_output_folder(args.out, "run folder")

    if args.manifest == "example":
        return example_manifest(args.assets)
    return load_manifest(args.manifest)


def _extractors(args):
    from ..bench.extractors import I3DFeatures, InceptionFeatures

    fid = InceptionFeatures(args.fid_weights, device=args.device) if args.fid_weights else None
    fvd = I3DFeatures(args.fvd_weights, device=args.device) if args.fvd_weights else None
    return fid, fvd


def _score_and_report(args, manifest, names) -> int:
    from ..bench.report import write_report
    from ..bench.scoring import score_method

    fid, fvd = _extractors(args)
    coeff = None
    if args.coeff_extractor:
        from ..bench.coefficients import load_coefficient_extractor

        coeff = load_coefficient_extractor(args.coeff_extractor)
    for name in names:
        summary = score_method(manifest, args.out, name, fid=fid, fvd=fvd, force=args.force, coeff=coeff)
        for subset, modes in summary["subsets"].items():
            for mode, values in modes.items():
                shown = ", ".join(
                    f"{k}={v:.4g}"
                    for k, v in values.items()
                    if isinstance(v, float) and k not in ("face_rate",)
                )
                print(f"{name} {subset} {mode}: {shown}")
    paths = write_report(args.out)
    print(f"report: {paths['markdown']}")
    return 0


def _run(args) -> int:
    from ..bench.methods import make_method
    from ..bench.runner import run_method

    manifest = _manifest(args)
    methods = [make_method(spec) for spec in args.method]
    if args.score and args.coeff_extractor:  # a bad spec fails before any method runs
        from ..bench.coefficients import load_coefficient_extractor

        load_coefficient_extractor(args.coeff_extractor)
    for method in methods:
        outputs = run_method(manifest, method, args.out, force=args.force)
        print(f"{method.name}: {len(outputs)} outputs in {args.out}/outputs/{method.name}")
    if args.score:
        return _score_and_report(args, manifest, [m.name for m in methods])
    return 0


def _score(args) -> int:
    from ..bench.methods import make_method
    from ..errors import InputError

    manifest = _manifest(args)
    names = []
    for spec in args.method:
        try:
            names.append(make_method(spec).name)
        except InputError:
            names.append(spec)  # a plain name of an earlier run (e.g. a command method's NAME)
    return _score_and_report(args, manifest, names)


def _report(args) -> int:
    from ..bench.report import write_report

    paths = write_report(args.run_dir, args.report_dir)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def _example(args) -> int:
    from ..bench.manifest import example_manifest, save_manifest

    path = save_manifest(
        example_manifest(args.assets, frames=args.frames, max_side=args.max_side), args.output
    )
    print(f"wrote {path}")
    return 0
