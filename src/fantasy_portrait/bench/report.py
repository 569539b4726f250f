"""Benchmark reports from a run folder's scores: Markdown (paper Table 1 layout), CSV, JSON and PNG plots.

Table 1 of the paper has one row per method and, for each of ExprBench-Single and ExprBench-Multi,
the self-reenactment columns FID, FVD, SSIM, LMD, MAE and the cross-reenactment columns AED, APD,
MAE. The Markdown report keeps that layout (one table per subset) and states which extractor produced
each number, because values from different extractors are comparable neither with each other nor
with the paper's.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path

import numpy as np

from .scoring import LOWER_IS_BETTER, load_case_scores, load_summaries

logger = logging.getLogger(__name__)

TABLE_COLUMNS = (
    ("self", "fid", "FID"),
    ("self", "fvd", "FVD"),
    ("self", "ssim", "SSIM"),
    ("self", "lmd", "LMD"),
    ("self", "mae", "MAE"),
    ("cross", "aed", "AED"),
    ("cross", "apd", "APD"),
    ("cross", "mae", "MAE"),
)
# Landmark metrics of a method whose output shows the face in fewer reference frames than this get a star.
FACE_RATE_FLAG = 0.95
UNITS = {
    "fid": "Fréchet distance, Inception pool3",
    "fvd": "Fréchet distance, I3D, 16-frame clips",
    "ssim": "0..1",
    "lmd": "% inter-ocular distance",
    "mae": "degrees",
    "aed": "% inter-ocular distance (landmark AED; a coefficient extractor uses its own units)",
    "apd": "degrees, |yaw|+|pitch|+|roll| (landmark APD)",
}


def _fmt(value, metric: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    return f"{value:.3f}" if metric == "ssim" else f"{value:.2f}"


def _arrow(metric: str) -> str:
    return "↓" if LOWER_IS_BETTER[metric] else "↑"


def _aed_apd_extractor(summary: dict) -> str:
    """What produced a summary's AED / APD: the landmark geometry or a user coefficient extractor."""
    ex = summary["extractors"]
    return ex.get("aed_apd") or ex["landmarks"]


def rows(summaries: list[dict]) -> list[dict]:
    """Flat records: method, subset, mode, metric, value, extractor, cases."""
    out = []
    for s in summaries:
        for subset, modes in s["subsets"].items():
            for mode, values in modes.items():
                for metric in ("fid", "fvd", "ssim", "lmd", "mae", "aed", "apd", "face_rate"):
                    if metric not in values:
                        continue
                    if metric in ("fid", "fvd"):
                        extractor = s["extractors"].get(metric)
                    elif metric == "ssim":
                        extractor = "pixels"
                    elif metric in ("aed", "apd"):
                        extractor = _aed_apd_extractor(s)
                    else:
                        extractor = s["extractors"]["landmarks"]
                    out.append(
                        {
                            "method": s["method"],
                            "subset": subset,
                            "mode": mode,
                            "metric": metric,
                            "value": values[metric],
                            "extractor": extractor or "",
                            "cases": values.get("cases", 0),
                        }
                    )
    return out


def markdown(summaries: list[dict]) -> str:
    """The report as Markdown: one Table-1 style table per subset, extractors, notes, per-case values."""
    lines = [f"# ExprBench report: {summaries[0]['manifest']}", ""]
    settings = summaries[0].get("manifest_settings", {})
    lines.append(
        "Inputs: " + ", ".join(f"{k}={v}" for k, v in settings.items() if v is not None)
        if settings
        else "Inputs: as given"
    )
    lines.append("")
    for subset, title in (("single", "ExprBench-Single"), ("multi", "ExprBench-Multi")):
        if not any(subset in s["subsets"] for s in summaries):
            continue
        lines += [f"## {title}", ""]
        head = "| Method | " + " | ".join(f"{label}{_arrow(m)}" for _, m, label in TABLE_COLUMNS) + " |"
        group = (
            "| | " + " | ".join("self" if mode == "self" else "cross" for mode, _, _ in TABLE_COLUMNS) + " |"
        )
        lines += [head, "|---" * (len(TABLE_COLUMNS) + 1) + "|", group]
        flagged = False
        for s in summaries:
            modes = s["subsets"].get(subset, {})
            cells = []
            for mode, metric, _ in TABLE_COLUMNS:
                values = modes.get(mode, {})
                cell = _fmt(values.get(metric), metric)
                rate = values.get("face_rate")
                landmark_metric = metric not in ("fid", "fvd", "ssim")
                if landmark_metric and values.get(metric) is None and values and not rate:
                    cell = "no face"
                elif (
                    landmark_metric
                    and values.get(metric) is not None
                    and rate is not None
                    and rate < FACE_RATE_FLAG
                ):
                    cell += "*"
                    flagged = True
                cells.append(cell)
            lines.append(f"| {s['method']} | " + " | ".join(cells) + " |")
        lines.append("")
        if flagged:
            lines += [
                f"\\* the output lost a face in more than {100 * (1 - FACE_RATE_FLAG):.0f}% of the reference frames; "
                "landmark metrics cover only the frames where it was found.",
                "",
            ]
        rates = []
        for s in summaries:
            for mode, values in s["subsets"].get(subset, {}).items():
                if values.get("face_rate") is not None:
                    rates.append(f"{s['method']} {mode} {values['face_rate']:.2f} ({values['cases']} cases)")
        if rates:
            lines += ["Face found in the output, fraction of reference frames: " + "; ".join(rates), ""]
    lines += ["## Extractors and units", ""]
    for s in summaries:
        ex = s["extractors"]
        lines.append(
            f"- {s['method']}: landmarks {ex['landmarks']}; AED/APD {_aed_apd_extractor(s)}; "
            f"FID {ex.get('fid') or 'not computed'}; FVD {ex.get('fvd') or 'not computed'}"
        )
    aed_apd = sorted({_aed_apd_extractor(s) for s in summaries})
    if any(_aed_apd_extractor(s) != s["extractors"]["landmarks"] for s in summaries):
        lines.append(
            "- AED/APD from a coefficient extractor: mean |difference| of its expression coefficients (AED) "
            "and of its 3 pose angles (APD), in the extractor's own units"
        )
    if len(aed_apd) > 1:
        lines.append(
            "- **Warning**: the AED/APD columns mix extractors across methods (see above); "
            "values from different extractors are not comparable. Score all methods with the same "
            "--coeff-extractor (or none)."
        )
    lines.append("- Units: " + "; ".join(f"{k.upper()} {v}" for k, v in UNITS.items()))
    lines.append(
        "- These numbers come from the extractors above; they are not comparable with numbers from other "
        "extractors (e.g. Deep3DFaceRecon coefficients for AED/APD, L2CS gaze) or with the paper's Table 1."
    )
    notes = sorted(
        {n for s in summaries for m in s["subsets"].values() for v in m.values() for n in v.get("notes", [])}
    )
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    lines += ["", "## Per case", ""]
    metrics = ("ssim", "lmd", "mae", "aed", "apd", "face_rate")
    lines += ["| Method | Case | Mode | Frames | " + " | ".join(m.upper() for m in metrics) + " |"]
    lines += ["|---" * (len(metrics) + 4) + "|"]
    for s in summaries:
        for cid, c in s["cases"].items():
            cells = [_fmt(c.get(m), m) for m in metrics]
            if not c.get("face_rate"):
                cells = [
                    "no face"
                    if m not in ("ssim", "face_rate")
                    and cell == "–"
                    and not (m == "lmd" and c["mode"] == "cross")
                    else cell
                    for m, cell in zip(metrics, cells)
                ]
            lines.append(
                f"| {s['method']} | {cid} | {c['mode']} | {c['frames']} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines) + "\n"


def _plot_bars(summaries: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (subset, mode, metric, label)
        for subset in ("single", "multi")
        for mode, metric, label in TABLE_COLUMNS
    ]
    panels = [
        p
        for p in panels
        if any(s["subsets"].get(p[0], {}).get(p[1], {}).get(p[2]) is not None for s in summaries)
    ]
    if not panels:
        return
    cols = 4
    rows_ = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows_, cols, figsize=(3.2 * cols, 2.6 * rows_), squeeze=False)
    names = [s["method"] for s in summaries]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (subset, mode, metric, label) in zip(axes.flat, panels):
        values = [s["subsets"].get(subset, {}).get(mode, {}).get(metric) for s in summaries]
        heights = [v if v is not None else 0.0 for v in values]
        ax.bar(range(len(names)), heights, color=[colours[i % len(colours)] for i in range(len(names))])
        for i, v in enumerate(values):
            if v is None:  # not measured (no face, no extractor): say so instead of a zero-height "best" bar
                ax.text(i, 0, "n/a", ha="center", va="bottom", fontsize=7, color="0.4")
        ax.set_xticks(range(len(names)), names, rotation=20, fontsize=7)
        ax.set_title(f"{subset} {mode} {label}{_arrow(metric)}", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_case_curves(run_dir: Path, summaries: list[dict], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_method = {s["method"]: load_case_scores(run_dir, s["method"]) for s in summaries}
    case_ids = sorted({cid for scores in per_method.values() for cid in scores})
    written = []
    for cid in case_ids:
        some = next(scores[cid] for scores in per_method.values() if cid in scores)
        names = ["ssim"] if "frames_ssim" in some else []
        names += [m for m in ("lmd", "mae", "apd", "aed") if some["faces"] and m in some["faces"][0]]
        fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.9), squeeze=False)
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        styles = ("-", "--", ":", "-.")
        legend = {}
        for ax, metric in zip(axes[0], names):
            for m, (method, scores) in enumerate(per_method.items()):
                if cid not in scores:
                    continue
                sc = scores[cid]
                colour = colours[m % len(colours)]  # one colour per method, one line style per face
                if metric == "ssim":
                    (line,) = ax.plot(sc["frames_ssim"], color=colour)
                    legend.setdefault(method, line)
                    continue
                for k, face in enumerate(sc["faces"]):
                    y = np.array([np.nan if v is None else v for v in face[metric]], float)
                    (line,) = ax.plot(y, color=colour, linestyle=styles[k % len(styles)])
                    legend.setdefault(f"{method} face {k}" if len(sc["faces"]) > 1 else method, line)
            ax.set_title(f"{metric.upper()}{_arrow(metric)} per frame", fontsize=9)
            ax.set_xlabel("frame", fontsize=8)
            ax.tick_params(labelsize=7)
        fig.legend(
            list(legend.values()),
            list(legend.keys()),
            loc="lower center",
            ncol=min(6, len(legend)),
            fontsize=7,
        )
        fig.suptitle(f"{cid} (missing lines: face not found)", fontsize=9)
        fig.tight_layout(rect=(0, 0.1, 1, 1))
        path = folder / f"frames_{cid}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def write_report(run_dir: Path, out_dir: Path | None = None) -> dict[str, Path]:
    """Write report.md, report.csv, report.json, metrics.png and frames_<case>.png; return their paths."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "report"
    summaries = load_summaries(run_dir)  # before creating anything: a wrong run folder leaves none
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    paths["markdown"] = out_dir / "report.md"
    paths["markdown"].write_text(markdown(summaries), encoding="utf-8")
    paths["csv"] = out_dir / "report.csv"
    records = rows(summaries)
    tmp = paths["csv"].with_name(f".report.csv.tmp{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(
            f, fieldnames=["method", "subset", "mode", "metric", "value", "extractor", "cases"]
        )
        writer.writeheader()
        for r in records:
            writer.writerow({**r, "value": "" if r["value"] is None else f"{r['value']:.6g}"})
    os.replace(tmp, paths["csv"])
    paths["json"] = out_dir / "report.json"
    paths["json"].write_text(
        json.dumps({"methods": summaries, "rows": records}, indent=2) + "\n", encoding="utf-8"
    )
    paths["bars"] = out_dir / "metrics.png"
    _plot_bars(summaries, paths["bars"])
    for p in _plot_case_curves(run_dir, summaries, out_dir):
        paths[p.stem] = p
    logger.info("report written to %s", out_dir)
    return paths
