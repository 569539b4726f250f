"""Pictures and videos the app shows: the face preview (drawn by ``faces/draw.py`` as ``inspect``
draws it) and the side-by-side of drivers and result."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PREVIEW_HEIGHT = 256  # driving previews are scaled to this height (small files, quick to encode)


def _fit_height(frame: np.ndarray, height: int) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    if h == height:
        return frame
    width = max(2, int(round(w * height / h)))
    interp = cv2.INTER_AREA if height < h else cv2.INTER_NEAREST
    return cv2.resize(frame, (width, height), interpolation=interp)


def _caption(width: int, texts: list[tuple[str, int]], height: int = 20) -> np.ndarray:
    import cv2

    bar = np.full((height, width, 3), 255, np.uint8)
    for text, x0 in texts:
        cv2.putText(
            bar, text, (x0 + 4, height - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA
        )
    return bar


def hstack_columns(columns: list[tuple[str, list[np.ndarray] | np.ndarray]], height: int, gap: int = 4):
    """Frames of labelled columns side by side at one height with a caption row below (the page
    draws its own label over the top-left corner); the shortest column sets the length. Yields
    (H, W, 3) uint8 frames with even sides."""
    n = min(len(frames) for _, frames in columns)
    sep = np.full((height, gap, 3), 255, np.uint8)
    caption = None
    for t in range(n):
        parts, xs, x = [], [], 0
        for k, (_, frames) in enumerate(columns):
            f = _fit_height(np.asarray(frames[t]), height)
            if k:
                parts.append(sep)
                x += gap
            xs.append(x)
            parts.append(f)
            x += f.shape[1]
        row = np.concatenate(parts, axis=1)
        if caption is None:
            caption = _caption(row.shape[1], [(label, x0) for (label, _), x0 in zip(columns, xs)])
        out = np.concatenate([row, caption], axis=0)
        yield out[: out.shape[0] // 2 * 2, : out.shape[1] // 2 * 2]


def scaled_track(track, s: float):
    """A FaceTrack with its coordinates scaled by ``s`` (to draw it on a resized frame)."""
    from dataclasses import replace

    def sc(a):
        return None if a is None else a * s

    return replace(
        track, boxes=sc(track.boxes), five_points=sc(track.five_points), landmarks=sc(track.landmarks)
    )


def scaled_plan(plan, s: float):
    """A FacePlan with the portrait's coordinates scaled by ``s`` (to draw it on a resized portrait)."""
    from dataclasses import replace

    faces = [
        replace(f, box=f.box * s, five_points=None if f.five_points is None else f.five_points * s)
        for f in plan.portrait_faces
    ]
    h, w = plan.image_hw
    return replace(
        plan,
        portrait_faces=faces,
        regions=(plan.regions * s).round().astype(plan.regions.dtype),
        image_hw=(int(round(h * s)), int(round(w * s))),
    )


def driving_preview(plan, path: Path, height: int = PREVIEW_HEIGHT) -> Path:
    """One video of every driving video with its tracked faces (boxes, driving face numbers, landmarks;
    a face in the colour of the portrait face it drives, unused ones grey, filled frames yellow), side
    by side at ``height``, at the plan's rate and frame count (as ``inspect`` draws them)."""
    from ..faces.draw import draw_tracks
    from ..io import iter_video_frames, write_video

    target = {d.index: p for d, p in zip(plan.driving, plan.mapping)}
    by_video: dict = {}
    for d in sorted([*plan.driving, *plan.unused], key=lambda d: d.index):
        by_video.setdefault(d.source, []).append(d)
    columns = []
    for video, faces in by_video.items():
        names = [d.index for d in faces]
        colors = [target.get(d.index) for d in faces]
        frames = []
        for t, frame in enumerate(iter_video_frames(video, fps=plan.fps, max_frames=plan.num_frames)):
            s = height / frame.shape[0]
            tracks = [scaled_track(d.track, s) for d in faces]
            frames.append(draw_tracks(_fit_height(frame, height), tracks, t, names=names, color_ids=colors))
        label = f"{Path(video).name}: driver {', '.join(str(i) for i in names)}"
        columns.append((label, frames))
    return write_video(path, hstack_columns(columns, height), fps=plan.fps)


def side_by_side(
    drivers: list[Path], result: np.ndarray, fps: float, path: Path, truth: Path | None = None
) -> Path:
    """drivers | result (| ground truth) at the result's height (at least 192 px), each driving video
    resampled to ``fps`` as the pipeline read it."""
    from ..io import read_video, write_video

    n = len(result)
    height = max(192, result.shape[1])
    columns = []
    for k, video in enumerate(dict.fromkeys(drivers)):
        frames = read_video(video, fps=fps, max_frames=n).frames
        columns.append((f"driver {k}" if len(drivers) > 1 else "driver", frames))
    columns.append(("result", result))
    if truth is not None:
        columns.append(("ground truth", read_video(truth, fps=fps, max_frames=n).frames))
    return write_video(path, hstack_columns(columns, height), fps=fps)
