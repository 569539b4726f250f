"""Summary report of a curation run: Markdown with counts and throughput, PNG histograms of scores.

Each histogram shows kept and rejected clips stacked, with the threshold drawn as a red line, so a
threshold can be tuned by eye before a large run.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np

from .config import REASONS, CurationConfig

STAGE_LABELS = {
    "shots": "shot boundaries",
    "decode": "decode sampled frames",
    "sharpness": "sharpness (frames and faces)",
    "faces": "face detection + mesh + tracking",
    "aesthetic": "aesthetic score",
    "motion": "facial motion",
    "cut": "cut kept clips",
    "caption": "captions",
}


def _histograms(config: CurationConfig) -> list[tuple[str, str, list[float]]]:
    """(column, title, threshold lines)."""
    return [
        ("duration_s", "clip length (s)", [config.min_seconds, config.max_seconds]),
        ("sharpness_frame", "frame sharpness (Laplacian variance)", [config.min_frame_sharpness]),
        ("faces", "stable faces per clip", [config.min_faces - 0.5, config.max_faces + 0.5]),
        ("people", "people per clip (person detector)", [config.min_faces - 0.5, config.max_faces + 0.5]),
        ("sharpness_face", "least sharp face (Laplacian variance)", [config.min_face_sharpness]),
        ("aesthetic", "aesthetic score", [config.min_aesthetic]),
        ("head_range", "head angle range (deg), max over faces", [config.min_head_range_deg]),
        ("mouth_motion", "mouth motion (inter-ocular units), max over faces", [config.min_mouth_motion]),
        ("eye_motion", "eye motion (inter-ocular units), max over faces", [config.min_eye_motion]),
    ]


def _plot(rows: list[dict], column: str, title: str, lines: list[float], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kept = [r[column] for r in rows if r.get(column) is not None and r["kept"]]
    rejected = [r[column] for r in rows if r.get(column) is not None and not r["kept"]]
    values = kept + rejected
    if not values:
        return False
    finite = [v for v in values + lines if math.isfinite(v)]
    low, high = min(finite), max(finite)
    if high <= low:
        high = low + 1.0
    bins = np.linspace(low, high, 31)
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.hist(
        [kept, rejected], bins=bins, stacked=True, label=["kept", "rejected"], color=["tab:green", "tab:gray"]
    )
    for i, value in enumerate(lines):
        ax.axvline(
            value, color="tab:red", linestyle="--", linewidth=1.5, label="threshold" if i == 0 else None
        )
    ax.set_title(title, fontsize=10)
    ax.set_ylabel("clips")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def write_report(rows: list[dict], config: CurationConfig, out_dir: str | Path) -> Path:
    """Write out_dir/report.md and out_dir/report/<score>.png; returns the Markdown path."""
    out_dir = Path(out_dir)
    figures = out_dir / "report"
    figures.mkdir(parents=True, exist_ok=True)
    counts = Counter("kept" if r["kept"] else r["reject_reason"] for r in rows)
    video_s = sum(r["duration_s"] for r in rows)
    kept_s = sum(r["duration_s"] for r in rows if r["kept"])
    lines = [
        "# Curation report",
        "",
        f"- videos: {len({r['video_id'] for r in rows})}, clips: {len(rows)}, "
        f"kept: {counts.get('kept', 0)} ({kept_s:.1f} s of {video_s:.1f} s)",
        f"- faces wanted: {config.min_faces}-{config.max_faces}; clip length {config.min_seconds}-"
        f"{config.max_seconds} s; settings fingerprint `{config.fingerprint()}`",
        "",
        "## Decisions",
        "",
        "| outcome | clips |",
        "| --- | ---: |",
        f"| kept | {counts.get('kept', 0)} |",
    ]
    lines += [f"| rejected: {reason} | {counts[reason]} |" for reason in REASONS if counts.get(reason)]
    lines += [
        "",
        "## Time per stage",
        "",
        "| stage | seconds | seconds of video per second |",
        "| --- | ---: | ---: |",
    ]
    for stage, label in STAGE_LABELS.items():
        seconds = sum(r.get(f"time_{stage}_s") or 0.0 for r in rows)
        if seconds > 0:
            lines.append(f"| {label} | {seconds:.2f} | {video_s / seconds:.2f} |")
    lines += [
        "",
        "(Wall time summed over workers; stages after a rejection are skipped.)",
        "",
        "## Scores",
        "",
    ]
    for column, title, thresholds in _histograms(config):
        name = f"{column}.png"
        if _plot(rows, column, title, thresholds, figures / name):
            values = np.array([r[column] for r in rows if r.get(column) is not None], dtype=np.float64)
            lines.append(
                f"### {title}\n\n![{column}](report/{name})\n\n"
                f"{values.size} clips scored; median {np.median(values):.3g}, "
                f"threshold(s) {', '.join(f'{t:g}' for t in thresholds)}\n"
            )
        else:
            lines.append(f"### {title}\n\nnot scored in this run\n")
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
